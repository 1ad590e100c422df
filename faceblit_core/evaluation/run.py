"""Both files at once: :func:`evaluate_pair` measures every figure of an output and
its input (and the style exemplar) in one streaming pass; :func:`evaluate_outputs`
several renders of one input in one pass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from faceblit_core.checks import check
from faceblit_core.errors import InputError
from faceblit_core.faces import detect_style_landmarks
from faceblit_core.guides.mask import whole_face_mask
from faceblit_core.media import iter_frames, probe, read_image
from faceblit_core.style import resolve_landmarks
from faceblit_core.evaluation.constants import MASK_FEATHER, NN_PATCH, NN_SAMPLES, NN_SCALE
from faceblit_core.evaluation.warping import _WarpAccumulator, _spike_from_pairs
from faceblit_core.evaluation.landmarks import _ExprAccumulator, _NMEAccumulator, _default_backend, _third_means, drift, redetect_rate
from faceblit_core.evaluation.texture import _PatchSampler, _SharpAccumulator, _check_nn_options, _nearest_sq, _rms, _style_pool, _style_sharpness, style_face_mask


# ======================================================================================
# Both files at once
# ======================================================================================


def _load_style(style_path: Path, style_landmarks: str | os.PathLike[str] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    image = read_image(style_path)
    points, _ = resolve_landmarks(style_path, style_landmarks, image_size=(image.shape[1], image.shape[0]))
    return image, points if points is not None else detect_style_landmarks(image)


def evaluate_pair(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    style_path: str | os.PathLike[str],
    style_landmarks: str | os.PathLike[str] | np.ndarray | None = None,
    *,
    max_frames: int | None = None,
    step: int = 1,
    n_patches: int = NN_SAMPLES,
    seed: int = 0,
    backend: Any = None,
) -> dict[str, float | int]:
    """Measure an output video (or still) against its input and the style: all of DESIGN §9.

    One streaming pass over both files (memory stays a few frames). On every
    evaluated input frame, faces are detected on their own (``backend``, no
    tracking); their union mask (:func:`faceblit_core.guides.mask.whole_face_mask`,
    feather 20, the whole forehead) weighs the warping error (pooled for ``warp_ratio``, per pair for
    ``warp_spike``) and selects the ``style_nn`` patches; the largest face is the
    reference of every landmark figure (``struct_nme``, ``expr_err``, ``drift``,
    ``redetect_rate``: one detection per output frame serves them all) and its
    mask and landmarks place the face for ``sharp_ratio``. The style's mask comes
    from its landmarks the same way.

    Parameters
    ----------
    input_path, output_path : str or path-like
        The source clip and its stylization: same size and frame count (stills work:
        ``warp_*`` are then ``nan``).
    style_path : str or path-like
        The style exemplar image.
    style_landmarks : path, (68, 2) float array, or None
        Its landmarks; default ``NAME.lm.txt`` beside the style, else detected
        (:func:`faceblit_core.faces.detect_style_landmarks`).
    max_frames : int, optional, keyword-only
        Only the first ``max_frames`` frames of the clips (before ``step``).
    step : int, keyword-only
        Evaluate every ``step``-th frame (0, step, 2·step, …); the warping error then
        compares frames ``step`` apart, with the flow between those input frames.
    n_patches : int, keyword-only
        Patches sampled for ``style_nn`` (4000).
    seed : int, keyword-only
        Seed of that sampling.
    backend : LandmarkBackend, optional, keyword-only
        Landmark detector for masks and the landmark figures (default dlib).

    Returns
    -------
    dict
        ``warp_ratio``, ``struct_nme``, ``style_nn``, ``expr_err``, ``drift``,
        ``sharp_ratio``, ``warp_spike``, ``redetect_rate`` (the figures, see
        :func:`warp_ratio`, :func:`struct_nme`, :func:`style_nn`, :func:`expr_err_stats`,
        :func:`drift`, :func:`sharp_ratio`, :func:`warp_spike_stats`,
        :func:`redetect_rate`), and the raw figures: ``expr_err_mouth``,
        ``expr_err_eyes`` (the two terms of ``expr_err``), ``struct_nme_first_third``,
        ``struct_nme_last_third`` (drift's denominator and numerator),
        ``sharp_ratio_input`` (the input face's own crispness over the exemplar's),
        ``warp_spike_frame`` (clip frame index of the worst pair's second frame, −1
        if none), ``warp_pair_ratio_median`` (the median per-pair ratio),
        ``warp_pairs_floored`` (pairs whose input error was floored, see :func:`warp_spike_stats`),
        ``warp_error_output``, ``warp_error_input`` (RGB [0, 1]), ``warp_reliable``
        (fraction of face weight with consistent flow), ``struct_nme_median``,
        ``struct_nme_frames``, ``no_face_input``, ``no_face_output`` (frames),
        ``style_nn_input`` (the input's own style_nn at the same patches: the
        unstylized baseline), ``style_patches``, ``frames`` (evaluated),
        ``width``, ``height``.

    Raises
    ------
    InputError
        A file is missing or unreadable, or the output's size or frame count differs
        from the input's.
    StyleError
        The style cannot be read, its landmarks are bad or not found, or its mask is empty.
    ValueError
        Bad ``max_frames``, ``step`` or sampling options.

    References
    ----------
    DESIGN §9; see :func:`warp_errors`, :func:`struct_nme_stats`, :func:`style_nn`.
    """
    return evaluate_outputs(
        input_path, [(output_path, style_path, style_landmarks)],
        max_frames=max_frames, step=step, n_patches=n_patches, seed=seed, backend=backend,
    )[0]  # fmt: skip


def evaluate_outputs(
    input_path: str | os.PathLike[str],
    outputs: Sequence[tuple[Any, Any, Any]],
    *,
    max_frames: int | None = None,
    step: int = 1,
    n_patches: int = NN_SAMPLES,
    seed: int = 0,
    backend: Any = None,
) -> list[dict[str, float | int]]:
    """:func:`evaluate_pair` for several outputs of one input (e.g. one per exemplar) in one pass.

    The input's share of the work — decoding, face detection, face masks, the optical
    flow and the input's warping error, its crispness — is done once per frame for
    all outputs; each output adds its own detection and errors. Every dict is exactly
    what :func:`evaluate_pair` returns for that output alone (same sampling seed).

    Parameters
    ----------
    input_path : str or path-like
        The source clip.
    outputs : sequence of (output_path, style_path, style_landmarks)
        Each stylization with its exemplar and the exemplar's landmarks (path, (68, 2)
        array, or None for ``NAME.lm.txt`` beside it / detection); at least one.
    max_frames, step, n_patches, seed, backend : keyword-only
        As :func:`evaluate_pair`.

    Returns
    -------
    list of dict
        One per output, in order; keys as :func:`evaluate_pair`.

    Raises
    ------
    InputError, StyleError, ValueError
        As :func:`evaluate_pair` (for any of the outputs), or ``outputs`` empty.
    """
    check(isinstance(step, (int, np.integer)) and step >= 1, "step", "an integer >= 1", step)
    check(max_frames is None or (isinstance(max_frames, (int, np.integer)) and max_frames >= 1), "max_frames", "None or an integer >= 1", max_frames)
    check(len(outputs) >= 1, "outputs", "at least one", len(outputs))
    _check_nn_options(n_patches, NN_SCALE, NN_PATCH)
    in_info = probe(input_path)
    compared = min(in_info.n_frames, max_frames) if max_frames is not None else in_info.n_frames
    out_infos, styles = [], []
    for output_path, style_path, style_landmarks in outputs:
        out_info = probe(output_path)
        if (out_info.width, out_info.height) != (in_info.width, in_info.height):
            raise InputError(
                f"{output_path}: {out_info.width}x{out_info.height} frames, the input has {in_info.width}x{in_info.height}"
            )
        if out_info.n_frames < compared or (max_frames is None and out_info.n_frames != in_info.n_frames):
            raise InputError(f"{output_path}: {out_info.n_frames} frames, the input has {in_info.n_frames}")
        style_image, style_lm = _load_style(Path(style_path), style_landmarks)
        style_mask = style_face_mask(style_image, style_lm)
        pool = _style_pool(style_image, style_mask, NN_SCALE, NN_PATCH)
        out_infos.append(out_info)
        styles.append((pool, _style_sharpness(style_image, style_lm, style_mask)))

    n = len(outputs)
    backend = _default_backend() if backend is None else backend
    end = in_info.n_frames if max_frames is None else min(in_info.n_frames, int(max_frames))
    warp = _WarpAccumulator(n)
    nme_accs = [_NMEAccumulator() for _ in range(n)]
    expr_accs = [_ExprAccumulator() for _ in range(n)]
    sharp_outs = [_SharpAccumulator() for _ in range(n)]
    sharp_in = _SharpAccumulator()
    # one sampler for all: the same patch places in every output and the input, as for one output
    sampler = _PatchSampler(n_patches, seed=seed, scale=NN_SCALE, patch=NN_PATCH, layers=n + 1)
    frames = 0
    streams = [iter_frames(in_info, start=0, end=end)] + [iter_frames(info, start=0, end=end) for info in out_infos]
    for index, (inp, *outs) in enumerate(zip(*streams)):
        if index % step:
            continue
        faces = backend.detect(inp)
        mask = np.zeros((in_info.height, in_info.width), np.float32)
        # The whole forehead: the region measured does not depend on where the input's hair lies.
        masks = [whole_face_mask(inp, face.points, feather=MASK_FEATHER) for face in faces]
        for face_weight in masks:
            np.maximum(mask, face_weight, out=mask)
        warp.add(inp, mask, *outs)
        ref_mask = None
        for k, out in enumerate(outs):
            ref, matched = nme_accs[k].add(faces, backend.detect(out) if faces else [])
            expr_accs[k].add(ref, matched)
            if ref is not None:  # crispness of the face the landmark figures are about
                if ref_mask is None:
                    ref_mask = masks[next(i for i, face in enumerate(faces) if face is ref)]
                    sharp_in.add(inp, ref.points, ref_mask)
                sharp_outs[k].add(out, ref.points, ref_mask)
        sampler.add(mask, inp, *outs)
        frames += 1

    results = []
    for k, (pool, style_sharp) in enumerate(styles):
        w = warp.result(k)
        s = nme_accs[k].result()
        e = expr_accs[k].result()
        spike = _spike_from_pairs(warp.per_pair[k])
        first, last = _third_means(s.per_frame)
        results.append({
            "warp_ratio": w.ratio,
            "struct_nme": s.mean,
            "style_nn": _rms(_nearest_sq(sampler.kept[k + 1], pool), NN_PATCH),
            "expr_err": e.mean,
            "drift": drift(s),
            "sharp_ratio": sharp_outs[k].result() / style_sharp,
            "warp_spike": spike.spike,
            "redetect_rate": redetect_rate(s),
            "expr_err_mouth": e.mouth,
            "expr_err_eyes": e.eyes,
            "struct_nme_first_third": first,
            "struct_nme_last_third": last,
            "sharp_ratio_input": sharp_in.result() / style_sharp,
            "warp_spike_frame": spike.frame * step if spike.frame >= 0 else -1,
            "warp_pair_ratio_median": spike.median,
            "warp_pairs_floored": spike.floored,
            "warp_error_output": w.output,
            "warp_error_input": w.input,
            "warp_reliable": w.reliable,
            "struct_nme_median": s.median,
            "struct_nme_frames": s.frames,
            "no_face_input": s.no_face_input,
            "no_face_output": s.no_face_output,
            "style_nn_input": _rms(_nearest_sq(sampler.kept[0], pool), NN_PATCH),
            "style_patches": int(len(sampler.keys)),
            "frames": frames,
            "width": in_info.width,
            "height": in_info.height,
        })  # fmt: skip
    return results
