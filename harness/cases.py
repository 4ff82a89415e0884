"""Expand a suite into cases: item × resolution × sigma × input seed × decoder seed.

Two seeds, two jobs: the *input seed* draws what the source makes (the noise
added to a latent at sigma > 0, the text-to-image generation of a `prompts`
source); the *decoder seed* is handed to the decoder (a stochastic decoder's
own noise). Cases that differ only in the decoder seed receive byte-identical
inputs — what the invention metrics compare.

The order is deterministic and each case id is a content hash of everything
that defines the case (item content hash and id, sizes, both seeds, sigma,
the source protocol), prefixed by a readable slug of the item id. The same suite
on the same images gives the same ids on every machine and every run, which
is what resume, baselines and history rely on.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from harness.records import Size


@dataclass(frozen=True)
class Item:
    """One source image (or prompt): its identity and content hash."""

    id: str
    sha256: str
    prompt: str | None
    origin: str
    input_size: Size | None = None  # a latent brought by the user stands for one size only


@dataclass(frozen=True)
class Case:
    id: str
    item_id: str
    item_sha256: str
    prompt: str | None
    seed: int
    sigma: float
    input_size: Size
    output_size: Size
    input_seed: int = 0  # seeds the source: latent noise, text-to-image generation

    @property
    def generation_seed(self) -> int:
        """The seed of a decoder that generates from the prompt itself (text-to-pixel, e.g. L2P):
        both seeds folded into one, so the source's images per prompt (input seeds) and decoder
        seeds both give distinct generations; it is the decoder seed when the input seed is 0."""
        return self.seed + (self.input_seed << 32)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"], data["output_size"] = list(self.input_size), list(self.output_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        return cls(**{**data, "input_size": tuple(data["input_size"]),
                      "output_size": tuple(data["output_size"])})


def expand(
    items: list[Item],
    sizes: list[tuple[Size, Size]],
    sigmas: list[float],
    seeds: list[int],
    source_protocol: dict[str, Any],
    input_seeds: list[int] | tuple[int, ...] = (0,),
) -> list[Case]:
    """Every case, in a fixed order; `seeds` are decoder seeds, `input_seeds` the source's."""
    cases = []
    for item in items:
        for input_size, output_size in sizes:
            if item.input_size is not None and tuple(item.input_size) != tuple(input_size):
                continue
            for sigma in sigmas:
                for input_seed in input_seeds:
                    for seed in seeds:
                        key = {
                            "item": item.id, "item_sha256": item.sha256, "seed": seed,
                            "sigma": sigma, "input": list(input_size), "output": list(output_size),
                            "source": source_protocol,
                        }
                        if input_seed != seed:
                            # Before input seeds existed the decoder seed also drew the input, so
                            # a case whose two seeds agree keeps its id (and its inputs).
                            key["input_seed"] = input_seed
                        cases.append(Case(
                            id=case_id(item.id, key), item_id=item.id, item_sha256=item.sha256,
                            prompt=item.prompt, seed=seed, sigma=float(sigma),
                            input_size=input_size, output_size=output_size, input_seed=input_seed,
                        ))
    ids = [case.id for case in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate cases: an item, size, sigma or seed is listed twice")
    return cases


def case_id(item_id: str, key: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", item_id).strip("-.")[:40] or "item"
    return f"{slug}-{digest[:12]}"
