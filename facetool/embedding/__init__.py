"""Export of embeddings: the faces of image files, folders and face caches (`sources`), embedded batch by batch
by an `Embedder` (torch or onnxruntime), and streamed to an .h5, .npz or .csv file (`writers`).

Memory and time stay linear in one batch: faces are read from a cache a batch at a time and each batch of
embeddings goes straight to the output, written under a temporary name and renamed into place only when
complete. The output is never one of the inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from facetool import __version__
from facetool.config.evaluate import EmbedConfig
from facetool.detection.resolve import CACHE_SUFFIXES
from facetool.embedding.sources import (
    CacheSource,
    FaceBatch,
    FaceSource,
    ImageSource,
    collect_sources,
)
from facetool.embedding.writers import (
    WRITERS,
    EmbeddingSet,
    EmbeddingWriter,
    EmbedSummary,
    check_output_path,
    open_writer,
    write_embeddings,
)
from facetool.errors import FacetoolError
from facetool.files import check_output_not_input
from facetool.inference import Embedder, crop_for, embedder_for

__all__ = [
    "CACHE_SUFFIXES",
    "WRITERS",
    "CacheSource",
    "EmbedSummary",
    "EmbeddingSet",
    "EmbeddingWriter",
    "FaceBatch",
    "FaceSource",
    "ImageSource",
    "Progress",
    "check_output_path",
    "collect_sources",
    "embed_paths",
    "embed_sources",
    "open_writer",
    "write_embeddings",
]

Progress = Callable[[int, int], None]


def embed_sources(
    embed: Embedder,
    sources: Sequence[FaceSource],
    writer: EmbeddingWriter,
    *,
    progress: Progress | None = None,
) -> EmbedSummary:
    """Embed every face of `sources` in order into `writer`, a batch of `embed.batch_size` at a time;
    `progress(done, total)`. FacetoolError when no face at all could be embedded."""
    total = sum(len(s) for s in sources)
    summary = EmbedSummary()
    for source in sources:
        before = len(summary.failures)
        for batch in source.batches(embed.batch_size, summary.failures):
            emb = embed(batch.faces)
            writer.add(emb, batch.paths, batch.identities, batch.detected)
            summary.count += len(batch.paths)
            summary.dim = emb.shape[1]
            if progress is not None:
                progress(summary.count + len(summary.failures), total)
        if progress is not None and len(summary.failures) > before:
            progress(summary.count + len(summary.failures), total)
    if not summary.count:
        reasons = "; ".join(f"{p}: {r}" for p, r in summary.failures[:5])
        raise FacetoolError("no face could be embedded: " + reasons)
    return summary


def embed_paths(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    output: str | Path,
    config: EmbedConfig | None = None,
    progress: Progress | None = None,
) -> tuple[EmbedSummary, Path]:
    """What `facetool embed` does: load the model, embed every input, stream `output` (format by extension).

    Raw images are detected and cropped as the model's card says (the training cache's settings; detect's
    defaults for a model without a card), with any `detect.*` the user set on top, then resized to the
    model's input like every cached face.
    """
    config = config or EmbedConfig()
    output = check_output_path(output)
    check_output_not_input(output, [checkpoint, *inputs])
    embed, _card = embedder_for(checkpoint, config)
    detect = crop_for(embed, config.detect)
    sources = collect_sources(inputs, detect)
    info = embed.info
    settings = {
        "facetool_version": __version__,
        "flip": config.flip,
        "model": str(checkpoint),
        "runtime": embed.runtime,
        "backbone": info.backbone,
        "embedding_dim": info.embedding_dim,
        "image_size": info.image_size,
        "model_source": info.source,
        "inputs": [str(p) for p in inputs],
        "detect": detect.model_dump(mode="json"),
    }
    with open_writer(output) as writer:
        summary = embed_sources(embed, sources, writer, progress=progress)
        writer.finish(settings)
    return summary, output
