"""Run a transformer with ONNX Runtime instead of torch (`runtime: "onnx"`).

When the model loads, its torch module (the encoder of a trained spaCy
pipeline, or a whole Hugging Face classifier) is exported to ONNX with
`torch.onnx.export`, its BERT-style layers are fused by ONNX Runtime's
transformer optimizer (attention, GELU, skip + LayerNorm) where the
architecture is one it knows, the Linear layers are quantized to int8 by
ONNX Runtime's dynamic quantization when `quantize` is "int8", and an
`InferenceSession` on the CPU takes over the module's `forward`: callers
(spacy-transformers, the HF classification code) see the same outputs as
before, as torch tensors. The torch weights stay as they are, so saving
writes the float model. This is inference only: nothing here has gradients.

Needs the `onnx` extra: ``pip install "spacy-emotion[onnx]"`` (onnx,
onnxruntime). Measured speed and accuracy: docs/speed.md.
"""

import ctypes
import gc
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

INSTALL_HINT = 'runtime="onnx" needs onnxruntime and onnx: pip install "spacy-emotion[onnx]"'

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""The inputs a session can take, in this order (those the tokenizer gives)."""

FUSED_TYPES = ("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet")
"""Architectures (`config.model_type`) whose layers ONNX Runtime's optimizer
fuses as "bert"; other architectures run unfused (still exported, still
quantized on request)."""

EXPORT_OPSET = 17


def require_onnxruntime():
    """RETURNS the onnxruntime module, or raises an ImportError that says what to install."""
    try:
        import onnx  # noqa: F401  (the quantizer and optimizer need it)
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return onnxruntime


class _Positional(torch.nn.Module):
    """Calls a model with keyword inputs given positionally (what the exporter traces)."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *tensors: torch.Tensor):
        return self.model(**dict(zip(self.names, tensors)), return_dict=False)


def example_inputs(names: Sequence[str], vocab_size: int) -> Dict[str, torch.Tensor]:
    """Two rows of different lengths (the second padded), so that the traced
    graph keeps the attention mask; ids are small and valid for any vocabulary."""
    ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 5, 6, 2, 0, 0]], dtype=torch.long) % max(vocab_size, 9)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.long)
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {name: tensors[name] for name in names}


def export(module: torch.nn.Module, names: Sequence[str], path: Path) -> Any:
    """Export `module` to an ONNX file with dynamic batch and sequence axes.

    names (Sequence[str]): the keyword inputs, of MODEL_INPUTS.
    RETURNS (ModelOutput): the module's output on the example inputs; its
        tensor keys, in order, name the ONNX outputs.
    """
    config = getattr(module, "config", None)
    example = example_inputs(names, int(getattr(config, "vocab_size", 0) or 0))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            reference = module(**example, return_dict=True)
        outputs = {k: v for k, v in reference.items() if isinstance(v, torch.Tensor)}
        axes = {name: {0: "batch", 1: "sequence"} for name in names}
        # hidden states (batch, sequence, width) and pooled or logit rows (batch, width)
        axes.update({k: {0: "batch", 1: "sequence"} if v.dim() == 3 else {0: "batch"} for k, v in outputs.items()})
        with warnings.catch_warnings():
            # the TorchScript exporter, deprecated since torch 2.9 for the
            # torch.export-based one, which is slower, needs onnxscript, and
            # gave a graph whose attention ONNX Runtime's optimizer did not fuse
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Positional(module, names).eval(),
                tuple(example[name] for name in names),
                str(path),
                input_names=list(names),
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=EXPORT_OPSET,
                dynamo=False,
            )
    except Exception as err:  # the exporter raises many kinds of errors
        kind = getattr(config, "model_type", type(module).__name__)
        raise ValueError(
            f'runtime="onnx": this {kind} model could not be exported to ONNX ({type(err).__name__}: {err}); '
            'use runtime="torch"'
        ) from err
    finally:
        module.train(was_training)
    return reference


def fuse(path: Path, config: Any, out: Path) -> bool:
    """Fuse a BERT-style graph with ONNX Runtime's transformer optimizer.

    RETURNS (bool): whether `out` was written (False: an architecture the
        optimizer doesn't know; the graph stays as exported).
    """
    if getattr(config, "model_type", None) not in FUSED_TYPES:
        return False
    from onnxruntime.transformers import optimizer

    heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0) or 0)
    model = optimizer.optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden)
    model.save_model_to_file(str(out))
    return True


def quantize_int8(path: Path, out: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization of the MatMul (Linear)
    weights: int8 with one scale per output channel, 7-bit range; activations
    uint8, scaled per batch. The fused attention stays float32.

    Chosen on the validation split (docs/history.md): the full 8-bit range
    saturates in the uint8 x int8 products of CPUs without AVX-512 VNNI
    (ONNX Runtime's documented `reduce_range` case) and changed more labels;
    quantizing the fused attention too was no faster and lost accuracy.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(path),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        op_types_to_quantize=["MatMul"],
        # fused nodes are in the com.microsoft domain, which shape inference doesn't type
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def release_freed_heap() -> bool:
    """Hand the heap freed by the export back to the OS (glibc's `malloc_trim`).

    Tracing, fusing and quantizing build several copies of the graph, and
    glibc keeps the memory they freed unless asked to return it.
    RETURNS (bool): whether memory was released (False off glibc).
    """
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.malloc_trim(0))


class OnnxForward:
    """Stands in for a torch module's `forward`: runs an ONNX Runtime session
    and returns the module's own output type, holding torch tensors."""

    def __init__(self, module: torch.nn.Module, names: Sequence[str], int8: bool = False, threads: int = 0) -> None:
        """
        module (torch.nn.Module): a Hugging Face model on the CPU.
        names (Sequence[str]): the inputs its callers pass, of MODEL_INPUTS.
        int8 (bool): quantize the Linear layers to int8.
        threads (int): ONNX Runtime's intra-op threads; 0: its default (one per core).
        """
        ort = require_onnxruntime()
        names = [name for name in MODEL_INPUTS if name in names]
        config = getattr(module, "config", None)
        with tempfile.TemporaryDirectory(prefix="spacy-emotion-onnx-") as tmp:
            path = Path(tmp) / "model.onnx"
            reference = export(module, names, path)
            self.output_type = type(reference)
            self.outputs = [k for k, v in reference.items() if isinstance(v, torch.Tensor)]
            if fuse(path, config, Path(tmp) / "fused.onnx"):
                path = Path(tmp) / "fused.onnx"
            if int8:
                quantize_int8(path, Path(tmp) / "int8.onnx")
                path = Path(tmp) / "int8.onnx"
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if threads:
                options.intra_op_num_threads = int(threads)
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        release_freed_heap()
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.int8 = int8

    def __call__(self, *args: Any, **kwargs: Any):
        if args:
            kwargs = {**dict(zip(MODEL_INPUTS, args)), **kwargs}
        kwargs.pop("return_dict", None)
        if kwargs.get("input_ids") is None:
            raise ValueError('runtime="onnx": the model needs input_ids')
        ids = kwargs["input_ids"]
        feed = {}
        for name in self.inputs:
            value = kwargs.get(name)
            if value is None:  # like the torch model: no token types are zeros, no mask is no padding
                value = torch.zeros_like(ids) if name == "token_type_ids" else torch.ones_like(ids)
            feed[name] = value.detach().cpu().numpy().astype("int64", copy=False)
        extra = [k for k, v in kwargs.items() if k not in self.inputs and v is not None]
        if extra:
            raise ValueError(f'runtime="onnx": inputs {extra} are not inputs of the exported model ({self.inputs})')
        values = self.session.run(self.outputs, feed)
        return self.output_type(**{key: torch.from_numpy(value) for key, value in zip(self.outputs, values)})


def attach(module: torch.nn.Module, names: Sequence[str], int8: bool = False, threads: int = 0) -> OnnxForward:
    """Make `module` run through ONNX Runtime (its `forward` replaced); RETURNS the session wrapper."""
    device = next(module.parameters()).device.type
    if device != "cpu":
        raise ValueError(
            f'runtime="onnx" runs on the CPU (onnxruntime\'s CPU build); the model is on {device}: '
            'use runtime="torch" (with autocast) on a GPU'
        )
    forward = OnnxForward(module, names, int8=int8, threads=threads)
    module.forward = forward  # an instance attribute: nn.Module.__call__ uses it
    return forward


def detach(module: Optional[torch.nn.Module]) -> None:
    """Give `module` its torch forward back (a no-op if it has none attached)."""
    if module is not None and isinstance(module.__dict__.get("forward"), OnnxForward):
        del module.forward
