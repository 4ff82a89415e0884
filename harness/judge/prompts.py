"""Criteria, the prompt template (and its version), the answer schema and answer parsing.

The judge sees "Image A" and "Image B" (and, for reference criteria, the
case's reference image first) and answers JSON {"verdict": "A"|"B"|"tie",
"reason": "..."}. Screen positions are mapped back to decoders elsewhere;
nothing here knows which decoder is which.

The template version is the declared TEMPLATE_VERSION plus a hash of every
text the judge reads for that criterion, so editing a text without bumping
the version still changes cache keys: an old verdict is never reused for a
different question.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from harness.errors import DecoderbenchError
from harness.judge.media import JudgeImage

TEMPLATE_VERSION = "1"
VERDICTS = ("A", "B", "tie")
MAX_REASON_CHARS = 500

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": list(VERDICTS)},
        "reason": {"type": "string", "description": "one short sentence"},
    },
    "required": ["verdict", "reason"],
}


@dataclass(frozen=True)
class Criterion:
    name: str
    instruction: str  # the question the judge answers
    reference: bool = False  # show the case's reference image too


BUILTIN_CRITERIA = {c.name: c for c in (
    Criterion("overall_quality", "Which image has the better overall visual quality: sharp, clean and "
              "natural-looking, free of artifacts such as blur, blockiness, ringing, noise, colour shifts "
              "or distorted structures?"),
    Criterion("detail_realism", "Which image shows more realistic fine detail: textures, edges and small "
              "structures that look natural and plausible, rather than smeared, repetitive, "
              "over-sharpened or artificial?"),
    Criterion("faithfulness", "Which image is more faithful to the reference image: the same content, "
              "layout, colours and details, with nothing important missing and nothing invented?",
              reference=True),
    Criterion("text_legibility", "Which image renders text more legibly: characters that are sharp, "
              "correctly formed and readable? If neither image contains text, answer tie."),
)}

PREAMBLE = ("You are an expert judge of image quality. Image A and Image B were produced by two different "
            "image decoders from the same input.")
REFERENCE_NOTE = "The reference image shows what the input looked like before it was encoded."
CAPTION_NOTE = "The input was generated for this caption: {caption}"
RULES = ("Judge only this criterion. The order in which the images are shown carries no meaning. Answer "
         '"tie" only if the images cannot be told apart on this criterion.')
ANSWER_FORMAT = ('Reply with JSON only: {"verdict": "A" | "B" | "tie", "reason": "<one short sentence>"}.')
CORRECTION = "Your previous reply could not be used ({problem}). Reply again, with JSON only, as specified."


def template_version(criterion: Criterion) -> str:
    texts = [PREAMBLE, REFERENCE_NOTE, CAPTION_NOTE, RULES, ANSWER_FORMAT, criterion.instruction,
             str(criterion.reference), json.dumps(ANSWER_SCHEMA, sort_keys=True)]
    return f"{TEMPLATE_VERSION}-{hashlib.sha256(chr(0).join(texts).encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Prompt:
    """Text and images, in the order the judge reads them."""

    parts: tuple[str | JudgeImage, ...]

    def with_correction(self, problem: str) -> Prompt:
        return Prompt((*self.parts, CORRECTION.format(problem=problem)))

    @property
    def text_chars(self) -> int:
        return sum(len(p) for p in self.parts if isinstance(p, str))

    @property
    def image_count(self) -> int:
        return sum(isinstance(p, JudgeImage) for p in self.parts)


def build_prompt(criterion: Criterion, first: JudgeImage, second: JudgeImage,
                 reference: JudgeImage | None, caption: str | None) -> Prompt:
    if criterion.reference and reference is None:
        raise ValueError(f"criterion {criterion.name!r} needs the case's reference image")
    intro = [PREAMBLE]
    if criterion.reference:
        intro.append(REFERENCE_NOTE)
    if caption:
        intro.append(CAPTION_NOTE.format(caption=json.dumps(caption, ensure_ascii=False)))
    intro += [f"Criterion: {criterion.instruction}", RULES]
    parts: list[str | JudgeImage] = [" ".join(intro)]
    if criterion.reference and reference is not None:
        parts += ["Reference image:", reference]
    parts += ["Image A:", first, "Image B:", second, ANSWER_FORMAT]
    return Prompt(tuple(parts))


class MalformedAnswer(DecoderbenchError, ValueError):
    """The judge's reply is not a valid answer; the message says why (it is recorded)."""


@dataclass(frozen=True)
class Answer:
    verdict: Literal["A", "B", "tie"]  # screen positions
    reason: str


def parse_answer(text: str) -> Answer:
    """Validate a reply against ANSWER_SCHEMA; accept a JSON object wrapped in prose or a code fence."""
    if not text.strip():
        raise MalformedAnswer("empty answer")
    data = _first_json_object(text)
    if data is None:
        raise MalformedAnswer(f"no JSON object in the answer: {_excerpt(text)}")
    verdict, reason = data.get("verdict"), data.get("reason")
    if not isinstance(verdict, str) or verdict.strip().lower() not in ("a", "b", "tie"):
        raise MalformedAnswer(f"verdict must be one of A, B, tie; got {_excerpt(json.dumps(verdict))}")
    if not isinstance(reason, str):
        raise MalformedAnswer("the answer has no string 'reason'")
    normalized = {"a": "A", "b": "B", "tie": "tie"}[verdict.strip().lower()]
    return Answer(normalized, reason.strip()[:MAX_REASON_CHARS])  # type: ignore[arg-type]


def _first_json_object(text: str) -> dict | None:
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"
