// decoderbench report: table sorting and case filtering. No network, no dependencies.
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
  for (const row of table.tBodies[0].rows) {
    row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
  }
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
});
