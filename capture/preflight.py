"""Checks that must reject a capture before any rank starts (``--gpus N``).

Every rank runs the same checks again; running them once in the parent first turns a bad
option into one ``Error:`` line instead of one per rank followed by the launcher's traceback.
"""

from __future__ import annotations

from dataclasses import replace

from dsocr.capture.config import CaptureConfig
from dsocr.capture.embedded_models import embedded_name
from dsocr.capture.pdf import discover_inputs

from dsocr.errors import ModelLoadError


def preflight(config: CaptureConfig) -> None:
    """Raise the DsocrError a rank would raise for ``config``'s images, model path or ``--out``.

    ``config`` itself is already validated (CaptureConfig checks its options when built).
    """
    if config.images:
        discover_inputs(config.images, config.page_selection)
    if embedded_name(config.model) is None and config.model is not None and not config.model.exists():
        raise ModelLoadError(f"--model {config.model}: no such folder")
    # The prompt's placeholder depends on the family, read from the config file (no weights);
    # the resume check compares the prompt that runs, as the ranks (capture.runner) do.
    from dsocr.capture.models import resolve_family, resolve_prompt

    config = replace(config, prompt=resolve_prompt(config, resolve_family(config)))
    # run_record loads the GPU stack; the ranks are about to load it anyway.
    from dsocr.capture.run_record import check_resumable

    check_resumable(config.out, config)
