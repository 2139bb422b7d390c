"""Export a sentence-transformers model to ONNX, offline, and prove it embeds identically.

    python -m ingest.embed.onnx_export --model FOLDER_OR_NAME --out DIR

The transformer is traced with `torch.onnx.export` (TorchScript path, opset 17, eager
attention, dynamic batch and sequence axes), then ONNX Runtime's transformer optimizer fuses
attention, layer norms and GELU. The result is checked against the torch model on texts of
every length up to the model's limit: the export is refused unless ONNX Runtime reaches
`MIN_COSINE` on every one. DIR receives `model.onnx`, `tokenizer.json`, `check.npy` (torch's
fp32 vectors of the check texts, which every runtime is held to when it loads the export) and
`export.json` (what was exported, from which weights, and the cosine reached), written aside
and renamed into place.

It runs in a child process of whoever needs it, so that torch is never loaded by the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ingest.embed.exported import CHECK_FILE, check_texts, load_export, min_cosine
from ingest.embed.sentence_transformer import mean_pooled_model, resolve_model
from ingest.errors import EmbedderUnavailable

EXPORT_FORMAT = 2


def weights_identity(source: str) -> dict[str, Any]:
    """What identifies the weights an export was made from (file names, sizes, mtimes)."""
    folder = Path(source)
    files = sorted(
        p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".json", ".txt")
    )
    return {str(p.relative_to(folder)): [p.stat().st_size, int(p.stat().st_mtime)] for p in files}


def export(model: str, out: Path) -> dict[str, Any]:
    import torch
    from onnxruntime.transformers.optimizer import optimize_model
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    source, model_id = resolve_model(model)
    if not Path(source).is_dir() or not mean_pooled_model(source):
        raise ValueError(f"{model!r} is not a local mean-pooled sentence-transformers folder")
    reference = SentenceTransformer(source, device="cpu")
    max_tokens = int(reference.max_seq_length or 512)
    transformer = AutoModel.from_pretrained(source, attn_implementation="eager").eval()
    config = transformer.config

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            # Keywords: positional tensors collide with the model's own parameter order.
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        raw = work / "raw.onnx"
        sample = torch.ones((2, 16), dtype=torch.int64)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes taken as constants
            torch.onnx.export(
                LastHidden(transformer),
                (sample, torch.ones_like(sample), torch.zeros_like(sample)),
                str(raw),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,
            )
        optimized = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
        )
        optimized.save_model_to_file(str(work / "model.onnx"))
        raw.unlink()
        shutil.copy(Path(source) / "tokenizer.json", work / "tokenizer.json")

        expected = reference.encode(
            check_texts(), normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)
        np.save(work / CHECK_FILE, expected, allow_pickle=False)
        manifest: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "model_id": model_id,
            "source": source,
            "weights": weights_identity(source),
            "dimension": int(expected.shape[1]),
            "max_tokens": max_tokens,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (work / "export.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        cosines = {}
        for runtime in ("onnx", "openvino"):
            try:
                candidate = load_export(work, runtime=runtime, threads=2)  # held to check.npy
            except EmbedderUnavailable as error:
                if runtime == "onnx":
                    raise ValueError(f"the ONNX export is unusable: {error}") from None
                continue  # not installed: checked in the same way whenever it loads
            cosines[candidate.runtime] = min_cosine(candidate, expected)
        manifest["min_cosine"] = cosines
        (work / "export.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest = export(args.model, args.out)
    except Exception as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"min_cosine": manifest["min_cosine"], "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
