"""A 2-D UMAP map of the frozen backbone's train embeddings, one hexbin panel per emotion.

Where an emotion's panel is dense, the frozen features group its texts
together; overlapping panels (joy and love, fear and surprise in the
seeds) show which emotions the features can't tell apart.
"""

from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np
import srsly

from . import plots

EMBEDDINGS_DIR = "embeddings"
"""Sub-folder of the reports folder for the embedding map."""


def neighbors_used(n_neighbors: int, n: int) -> int:
    """The n_neighbors UMAP runs with on n points: at most n - 1, at least 2."""
    return max(2, min(n_neighbors, n - 1))


def project_umap(vectors: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> np.ndarray:
    """Project embeddings to 2-D with UMAP (umap-learn), cosine metric.

    vectors (np.ndarray): (n, dim) embeddings, scaled to [0, 1] per
        dimension before projecting.
    n_neighbors (int): UMAP's neighbourhood size (capped at n - 1).
    min_dist (float): UMAP's minimum distance between projected points.
    seed (int): random state (makes the projection reproducible).
    RETURNS (np.ndarray): (n, 2) coordinates.
    """
    import umap
    from sklearn.preprocessing import MinMaxScaler

    vectors = np.asarray(vectors, dtype="float32")
    if len(vectors) < 4:
        raise ValueError(f"UMAP needs at least 4 texts, got {len(vectors)}")
    scaled = MinMaxScaler().fit_transform(vectors)
    # spectral initialisation needs a reasonably large graph; tiny samples start at random
    init = "spectral" if len(vectors) > 50 else "random"
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=neighbors_used(n_neighbors, len(vectors)),
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        init=init,
        n_jobs=1,  # a seed makes UMAP single-threaded anyway
    )
    return reducer.fit_transform(scaled)


def embedding_map(
    vectors: np.ndarray,
    labels: Sequence[str],
    output_dir: Path,
    backbone: str = "",
    pooling: str = "mean",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
) -> Dict[str, Any]:
    """Project train embeddings with UMAP and draw one hexbin panel per emotion.

    vectors (np.ndarray): (n, dim) train embeddings.
    labels (Sequence[str]): the gold label of each text.
    output_dir (Path): the reports folder; writes embeddings/umap_train.png
        and embeddings/umap_train.json (parameters and coordinates).
    backbone (str): the backbone's name, for the title.
    pooling (str): "mean" or "cls", for the title.
    n_neighbors, min_dist, seed: UMAP parameters (see `project_umap`).
    RETURNS (Dict[str, Any]): the parameters and "figure" (the PNG path).
    """
    coords = project_umap(vectors, n_neighbors, min_dist, seed)
    folder = Path(output_dir) / EMBEDDINGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    pooled = "mean-pooled" if pooling == "mean" else "[CLS]"
    title = f"UMAP of frozen {pooled} embeddings of {len(labels):,} train texts" + (
        f" ({backbone})" if backbone else ""
    )
    figure = plots.hexbin_panels(coords, labels, folder / "umap_train.png", title)
    info = {
        "backbone": backbone,
        "pooling": pooling,
        "n": len(labels),
        "n_neighbors": neighbors_used(n_neighbors, len(labels)),
        "min_dist": min_dist,
        "seed": seed,
        "figure": str(figure),
    }
    srsly.write_json(
        folder / "umap_train.json",
        {
            **info,
            "points": [
                {"x": round(float(x), 4), "y": round(float(y), 4), "label": label}
                for (x, y), label in zip(coords, labels)
            ],
        },
    )
    return info
