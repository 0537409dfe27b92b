"""One coverage-guided (libFuzzer via atheris) fuzz run of one target:
``python -m tests.fuzz.atheris_one NAME CORPUS_DIR [libFuzzer flags]``.

The corpus directory is seeded with the target's valid samples; medchain's own
modules are instrumented, so libFuzzer steers towards new branches of the
decoders. Any exception other than the target's typed rejection is a crash:
libFuzzer prints it, writes the input as ``crash-*`` and exits non-zero."""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["medchain"]):
    from tests.fuzz.targets import TARGETS, check


def main() -> None:
    name, corpus = sys.argv[1], Path(sys.argv[2])
    target = TARGETS[name]
    corpus.mkdir(parents=True, exist_ok=True)
    for i, sample in enumerate(target.samples()):
        (corpus / f"seed-{i}").write_bytes(sample)

    def one_input(data: bytes) -> None:
        finding = check(target, data)
        if finding is not None:
            raise AssertionError(finding)

    atheris.Setup([sys.argv[0], *sys.argv[3:], str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
