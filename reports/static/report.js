// decoderbench report: table sorting, case filtering, the metric chooser of the plots, the A/B
// compare panel (slider, flicker, difference) and synchronized pan and zoom. No network, no
// dependencies; images are never read back (file:// pages cannot), the browser composites them.
"use strict";

function cellKey(cell) {
  const raw = cell.getAttribute("data-sort");
  if (raw === null) return { missing: false, text: cell.textContent.trim().toLowerCase() };
  if (raw === "") return { missing: true };
  return { missing: false, number: Number(raw) };
}

function compareKeys(a, b, direction) {
  if (a.missing || b.missing) return (a.missing ? 1 : 0) - (b.missing ? 1 : 0); // missing always last
  if (a.number !== undefined && b.number !== undefined) return direction * (a.number - b.number);
  return direction * String(a.text).localeCompare(String(b.text));
}

function sortTable(table, index, header) {
  const body = table.tBodies[0];
  const current = header.getAttribute("aria-sort");
  // First click shows the best first (the column's "better" direction), then toggles.
  const better = header.getAttribute("data-better");
  let ascending = current ? current !== "ascending" : better !== "higher";
  const direction = ascending ? 1 : -1;
  const rows = Array.from(body.rows);
  const keyed = rows.map((row, position) => ({ row, position, key: cellKey(row.cells[index]) }));
  keyed.sort((x, y) => compareKeys(x.key, y.key, direction) || x.position - y.position);
  keyed.forEach(entry => body.appendChild(entry.row));
  for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
}

function filterRows(input) {
  const table = document.getElementById(input.getAttribute("data-table"));
  const needle = input.value.trim().toLowerCase();
  let shown = 0;
  for (const row of table.tBodies[0].rows) {
    row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
    if (!row.hidden) shown += 1;
  }
  const count = document.getElementById(input.getAttribute("data-count"));
  if (count) count.textContent = shown === table.tBodies[0].rows.length ? `${shown}` : `${shown} of ${table.tBodies[0].rows.length}`;
  const noun = document.getElementById(input.getAttribute("data-noun"));
  if (noun) noun.textContent = shown === 1 ? "case" : "cases";
}

// The leaderboard's column chooser: a column's header and cells share its data-col.
function chooseColumn(box) {
  const chooser = box.closest("details.chooser");
  const table = document.getElementById(chooser.dataset.for);
  for (const cell of table.querySelectorAll(`[data-col="${box.dataset.col}"]`)) {
    cell.classList.toggle("off", !box.checked);
  }
  chooser.querySelector(".shown-count").textContent =
    chooser.querySelectorAll("input[type=checkbox]:checked").length;
}

// The case index's metric: one cell per (metric, decoder), the chosen metric's shown.
function chooseIndexMetric(select) {
  const table = document.getElementById(select.dataset.table);
  for (const cell of table.querySelectorAll("[data-metric]")) {
    cell.classList.toggle("off", cell.dataset.metric !== select.value);
  }
}

// The plotted metric: one figure per metric, the chosen one shown.
function chooseFigure(select) {
  for (const figure of document.querySelectorAll(`[data-figures="${select.dataset.for}"] [data-metric]`)) {
    figure.hidden = figure.dataset.metric !== select.value;
  }
}

// A/B compare: the same region of two images; slider (B clipped), flicker, difference (blend).
function setupCompare(root) {
  const width = Number(root.dataset.width), height = Number(root.dataset.height);
  const stage = root.querySelector(".stage"), frame = root.querySelector(".frame");
  const a = root.querySelector("img.a"), b = root.querySelector("img.b");
  const split = root.querySelector(".split");
  let timer = null;
  const update = () => {
    a.src = root.querySelector(".pick-a").value;
    b.src = root.querySelector(".pick-b").value;
    const [x, y, size] = root.querySelector(".pick-region").value.split(",").map(Number);
    const room = root.clientWidth || width;
    const fit = Math.min(1, room / width);
    // a region at the largest whole enlargement that fits the panel (at most 512 px, at least 2×)
    const scale = size ? Math.max(2, Math.floor(Math.min(room, 512) / size)) : fit;
    const boxW = size ? size * scale : Math.round(width * fit), boxH = size ? size * scale : Math.round(height * fit);
    stage.style.width = `${boxW}px`;
    stage.style.height = `${boxH}px`;
    for (const img of [a, b]) {
      img.style.width = `${width * scale}px`;
      img.style.height = `${height * scale}px`;
      img.style.transform = `translate(${-x * scale}px, ${-y * scale}px)`;
      img.classList.toggle("pixelated", scale >= 2);
    }
    const mode = root.querySelector("input[name=mode]:checked").value;
    stage.dataset.mode = mode;
    split.hidden = mode !== "slider";
    b.style.clipPath = mode === "slider" ? `inset(0 0 0 ${split.value}%)` : "none";
    b.style.visibility = "visible";
    clearInterval(timer);
    if (mode === "flicker") timer = setInterval(() => {
      b.style.visibility = b.style.visibility === "hidden" ? "visible" : "hidden";
    }, 600);
  };
  root.addEventListener("input", update);
  root.addEventListener("change", update);
  update();
}

// Pan and zoom: one transform for every view; wheel zooms about the cursor, drag pans.
function setupPanZoom(root) {
  const width = Number(root.dataset.width), height = Number(root.dataset.height);
  const ports = Array.from(root.querySelectorAll(".port"));
  const state = { scale: 1, x: 0, y: 0 };
  const apply = () => {
    for (const port of ports) {
      const img = port.querySelector("img");
      img.style.width = `${width}px`;
      img.style.height = `${height}px`;
      img.style.transform = `translate(${state.x}px, ${state.y}px) scale(${state.scale})`;
      img.classList.toggle("pixelated", state.scale >= 2);
    }
  };
  const fit = () => {
    const port = ports[0];
    state.scale = Math.min(port.clientWidth / width, port.clientHeight / height);
    state.x = (port.clientWidth - width * state.scale) / 2;
    state.y = (port.clientHeight - height * state.scale) / 2;
    apply();
  };
  const zoomAt = (factor, cx, cy) => {
    const next = Math.min(32, Math.max(0.05, state.scale * factor));
    state.x = cx - (cx - state.x) * (next / state.scale);
    state.y = cy - (cy - state.y) * (next / state.scale);
    state.scale = next;
    apply();
  };
  for (const port of ports) {
    port.addEventListener("wheel", event => {
      event.preventDefault();
      const box = port.getBoundingClientRect();
      zoomAt(event.deltaY < 0 ? 1.25 : 0.8, event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    port.addEventListener("pointerdown", event => {
      port.setPointerCapture(event.pointerId);
      let last = [event.clientX, event.clientY];
      const move = e => {
        state.x += e.clientX - last[0];
        state.y += e.clientY - last[1];
        last = [e.clientX, e.clientY];
        apply();
      };
      port.addEventListener("pointermove", move);
      port.addEventListener("pointerup", () => port.removeEventListener("pointermove", move), { once: true });
    });
  }
  for (const button of root.querySelectorAll("[data-zoom]")) {
    button.addEventListener("click", () => {
      if (button.dataset.zoom === "fit") return fit();
      const port = ports[0];
      zoomAt(Number(button.dataset.zoom) / state.scale, port.clientWidth / 2, port.clientHeight / 2);
    });
  }
  fit();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.sortable")) {
    Array.from(table.tHead.rows[0].cells).forEach((header, index) => {
      header.tabIndex = 0;
      header.addEventListener("click", () => sortTable(table, index, header));
      header.addEventListener("keydown", event => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortTable(table, index, header); }
      });
    });
  }
  for (const input of document.querySelectorAll("input.filter")) {
    input.addEventListener("input", () => filterRows(input));
  }
  for (const box of document.querySelectorAll("details.chooser input[type=checkbox]")) {
    box.addEventListener("change", () => chooseColumn(box));
  }
  for (const select of document.querySelectorAll("select.metric-choice")) {
    select.addEventListener("change", () => chooseIndexMetric(select));
    chooseIndexMetric(select);
  }
  for (const select of document.querySelectorAll("select.figure-choice")) {
    select.addEventListener("change", () => chooseFigure(select));
    chooseFigure(select);
  }
  document.querySelectorAll(".compare").forEach(setupCompare);
  document.querySelectorAll(".panzoom").forEach(setupPanZoom);
});
