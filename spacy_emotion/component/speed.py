"""Speed settings of `emotion_classifier` and the torch runtime that applies them.

:class:`SpeedOptions` is what the component's config holds (length-bucketed
batches, inference mode, torch threads, int8 or bf16 Linear layers, the whole
transformer in bf16, bf16/fp16 autocast, ONNX Runtime instead of torch, the
spaCy backend's batched fast path);
:class:`TorchRuntime` applies them to the predictor's torch module;
:func:`length_batches` cuts texts into length buckets.

The defaults are length buckets, inference mode, the fast path, and on a
CPU that computes bf16 natively (AVX-512 BF16 or AMX) the whole transformer
in bf16. :meth:`SpeedOptions.as_trained` changes nothing. What each setting
does and its measured speed and accuracy: docs/speed.md.
"""

import contextlib
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import torch

QUANTIZE_MODES = ("auto", "none", "int8", "bf16", "bf16-full")
DEFAULT_BATCH_TOKENS = 512
"""batch_tokens "auto": the padded tokens of a length bucket, before the raise for cheap models."""
FORWARD_FLOPS = {"cpu": 1e9, "cuda": 1e11}
"""The least work (floating-point operations) worth one forward pass, by
device: the pass's fixed cost (Python, one call of the tokenizer, kernel
launches) is then small beside its arithmetic."""


def batch_budget(module: Optional[torch.nn.Module], configured: int) -> int:
    """The padded tokens of one length bucket: `configured`, raised for a
    model so cheap that a bucket of that size would cost less than
    `FORWARD_FLOPS` on its device (about two operations per weight per
    wordpiece, embeddings aside: they are lookups). MiniLM (6 layers, 384
    wide: some 21 MFLOP per wordpiece) keeps 512 on a CPU, where larger
    buckets are slower (more padding, longer attention), and gets about
    4,700 on a GPU, near spaCy's advice for GPUs (4,096); a 1-layer, 32-wide
    model runs tens of thousands of tokens per pass, because the fixed cost
    of a pass decides its speed.

    module (Optional[torch.nn.Module]): the transformer (None: `configured`).
    RETURNS (int): the budget.
    """
    if module is None:
        return int(configured)
    weights = sum(p.numel() for name, p in module.named_parameters() if "embeddings." not in name)
    device = next((p.device.type for p in module.parameters()), "cpu")
    per_token = max(2 * weights, 1)
    return max(int(configured), int(-(-FORWARD_FLOPS.get(device, FORWARD_FLOPS["cpu"]) // per_token)))


BF16_FORMATS = ("bf16", "bf16-full")
AUTOCAST_MODES = ("none", "bf16", "fp16")
RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class SpeedOptions:
    """How a predictor runs its torch model (defaults: see the module's doc).

    sort_by_length (bool): length-bucketed model batches. The texts (HF
        backend: the windows) are sorted by length and cut into batches of at
        most `batch_tokens` padded tokens, so that little padding is computed;
        results keep the input order. The spaCy backend already sorts each
        batch by length in spacy-transformers (its `max_batch_items`: 512
        spaCy tokens in configs/trf.cfg, 4096 in spacy-transformers'
        default and in pipelines trained before that setting); there the option sets
        that budget to `batch_tokens`, which cuts a batch into tighter
        length buckets, and with bf16 Linear layers pads each bucket to a
        multiple of 16 wordpieces (fewer tensor shapes: less heap kept over
        a long stream; see `predictors.WORDPIECE_MULTIPLE`).
    batch_tokens (Union[int, str]): padded tokens per model batch with
        sort_by_length (wordpieces for the HF backend, spaCy tokens for the
        spaCy backend), or "auto": 512, raised for a model so cheap that a
        batch of 512 costs less than `FORWARD_FLOPS` (:func:`batch_budget`).
    inference_mode (bool): run the model under `torch.inference_mode()`
        (the spaCy backend otherwise runs it under thinc's `torch.no_grad()`;
        the HF backend always uses inference mode).
    torch_threads (int): `torch.set_num_threads(n)` around each model call,
        restored afterwards (other models in the process keep their own);
        0 keeps torch's setting (one thread per core). On a small or busy
        machine fewer threads can be faster.
    quantize (str): the format of the transformer's Linear layers:
        "none" (float32, as trained); "int8": dynamic int8 quantization
        (torch.ao.quantization.quantize_dynamic, weights scaled per output
        channel; CPU only; changes a few labels); "bf16": bf16 weights and
        matrix products, float32 inputs and outputs (everything else,
        LayerNorm and softmax included, stays float32); "bf16-full": the whole transformer in bf16, weights and
        activations (embeddings, attention, GELU and LayerNorm too; no
        float32 round trip around each Linear layer), its outputs cast to
        float32; "auto": "bf16-full" on a CPU that computes bf16
        natively (:func:`native_bf16_cpu`), "none" on other CPUs, on a GPU,
        and when `autocast` is set. Saving the pipeline still writes the original
        float weights.
    autocast (str): "none", "bf16" or "fp16": run the transformer under
        `torch.autocast` in that dtype, for GPUs; outputs are cast back to
        float32. On a CPU quantize="bf16" does the same job and casts the
        weights once instead of in every call. Not together with quantize
        "int8", "bf16" or "bf16-full".
    fast_path (bool): spaCy backend: run the trained pipeline's transformer
        and textcat over whole batches (one alignment, pooling and softmax
        per batch, see `fast_path.BatchedTextcat`) instead of `nlp.pipe`,
        which splits every batch into per-doc objects and classifies doc by
        doc. The same scores to float rounding. A pipeline it can't run
        exactly (other components, a textcat that reads the docs itself)
        runs `nlp.pipe`; the predictor's `fast_path` says which runs. No
        effect on the HF backend, which already runs whole batches.
    prefetch (bool): in `nlp.pipe`, a background thread makes the next
        batch's docs (spaCy's tokenizer and the components before this one)
        and does the predictor's host work on them (`prepare`: wordpieces,
        alignment) while the model runs on the current batch
        (:mod:`prefetch`). Same results, same order; off: all of it between
        model calls.
    runtime (str): what runs the transformer: "torch", or "onnx": ONNX
        Runtime on the CPU, over an export made when the model loads (see
        `onnx_runtime`; needs the `onnx` extra). With "onnx", quantize
        "int8" is ONNX Runtime's int8 quantization, "auto" and "none" run
        float32; "bf16" and autocast are torch's and can't be combined with it.
    """

    sort_by_length: bool = True
    batch_tokens: Union[int, str] = "auto"
    inference_mode: bool = True
    torch_threads: int = 0
    quantize: str = "auto"
    autocast: str = "none"
    runtime: str = "torch"
    fast_path: bool = True
    prefetch: bool = True

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}")
        if self.autocast not in AUTOCAST_MODES:
            raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}, got {self.autocast!r}")
        if self.quantize in ("int8",) + BF16_FORMATS and self.autocast != "none":
            raise ValueError(
                f"quantize={self.quantize!r} and autocast={self.autocast!r} can't be combined: "
                "the quantized Linear layers take float32 inputs; use one of them"
            )
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.runtime == "onnx" and (self.quantize in BF16_FORMATS or self.autocast != "none"):
            raise ValueError(
                f"runtime='onnx' runs float32 or int8 (quantize 'none', 'auto' or 'int8', autocast 'none'); "
                f"got quantize={self.quantize!r}, autocast={self.autocast!r}: use runtime='torch' for those"
            )
        if int(self.torch_threads) < 0:
            raise ValueError(f"torch_threads must be >= 0 (0 = torch's default), got {self.torch_threads}")
        if self.batch_tokens != "auto" and (
            isinstance(self.batch_tokens, (bool, float))
            or not str(self.batch_tokens).isdigit()
            or int(self.batch_tokens) < 1
        ):
            raise ValueError(f"batch_tokens must be 'auto' or an integer >= 1, got {self.batch_tokens!r}")
        if self.batch_tokens != "auto":
            object.__setattr__(self, "batch_tokens", int(self.batch_tokens))

    @classmethod
    def as_trained(cls, **changes: Any) -> "SpeedOptions":
        """Options that change nothing: float32 in torch, the pipeline's own batching, `nlp.pipe`."""
        plain = dict(
            sort_by_length=False,
            inference_mode=False,
            quantize="none",
            autocast="none",
            runtime="torch",
            fast_path=False,
            prefetch=False,
        )
        return cls(**{**plain, **changes})

    def batch_budget(self, module: Optional[torch.nn.Module]) -> int:
        """RETURNS (int): the padded tokens of a length bucket: `batch_tokens`,
        or for "auto" :func:`batch_budget` of `module` (the transformer)."""
        if self.batch_tokens != "auto":
            return int(self.batch_tokens)
        return batch_budget(module, DEFAULT_BATCH_TOKENS)

    def linear_format(self, device_type: str) -> str:
        """What quantize means on this device and runtime: "none", "int8", "bf16" or "bf16-full" ("auto" resolved)."""
        if self.runtime == "onnx":
            return "int8" if self.quantize == "int8" else "none"
        if self.quantize != "auto":
            return self.quantize
        if self.autocast != "none" or device_type != "cpu":
            return "none"
        # chosen on the validation split (docs/speed.md)
        return "bf16-full" if native_bf16_cpu() else "none"

    @classmethod
    def from_cfg(cls, cfg: Dict[str, Any]) -> "SpeedOptions":
        """The options found in a component cfg (missing keys: defaults)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in cfg.items() if k in names})

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def length_batches(lengths: List[int], budget: int) -> List[List[int]]:
    """Indices sorted by length, cut into batches whose padded size fits `budget`.

    A batch's padded size is its longest length times its number of items;
    an item longer than the budget gets a batch of its own.
    RETURNS (List[List[int]]): the batches, shortest items first.
    """
    batches: List[List[int]] = []
    batch: List[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: lengths[j]):
        if batch and lengths[i] * (len(batch) + 1) > budget:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


class TorchRuntime:
    """Applies SpeedOptions to one torch module: quantization, autocast, modes,
    or ONNX Runtime in place of torch.

    The module is changed in place (it stays the one its owner uses): int8
    and bf16 swap its Linear layers for quantized ones and keep the float
    layers, so that :meth:`float_weights` can put them back for saving;
    bf16-full also casts the other weights (embeddings, LayerNorm) to bf16
    and keeps their float values for the same purpose;
    runtime "onnx" replaces its `forward` and leaves its weights alone.
    `linear_format` says which format runs ("auto" resolved).
    """

    def __init__(
        self, module: Optional[torch.nn.Module], options: SpeedOptions, input_names: Sequence[str] = ()
    ) -> None:
        """
        module (Optional[torch.nn.Module]): the transformer (None: a model without one).
        options (SpeedOptions): the settings to apply.
        input_names (Sequence[str]): the inputs the module's callers pass
            (the tokenizer's `model_input_names`); needed by runtime "onnx".
        """
        self.module = module
        self.options = options
        self._float_layers: Dict[str, torch.nn.Module] = {}
        self._fast_layers: Dict[str, torch.nn.Module] = {}
        self._float_rest: Dict[str, torch.Tensor] = {}
        self._hook = None
        self.linear_format = "none"
        if module is None:
            if options.quantize not in ("none", "auto") or options.autocast != "none" or options.runtime != "torch":
                warnings.warn(
                    "quantize/autocast/runtime ignored: this emotion model has no transformer (torch) layers."
                )
            return
        self.linear_format = options.linear_format(self.device_type)
        if options.runtime == "onnx":
            from .onnx_runtime import attach

            attach(module, input_names, int8=self.linear_format == "int8", threads=int(options.torch_threads))
        elif self.linear_format == "int8":
            self._quantize_int8()
        elif self.linear_format in BF16_FORMATS:
            self._swap_linear_layers(Bf16Linear)
            if self.linear_format == "bf16-full":
                self._cast_rest(torch.bfloat16)
        if options.autocast != "none" or self.linear_format == "bf16-full":
            self._hook = module.register_forward_hook(_outputs_to_float32)

    @property
    def device_type(self) -> str:
        if self.module is None:
            return "cpu"
        param = next(self.module.parameters(), None)
        return param.device.type if param is not None else "cpu"

    def _quantize_int8(self) -> None:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        if self.device_type != "cpu":
            raise ValueError("quantize='int8' (dynamic quantization) runs on the CPU only; use autocast on the GPU.")
        module = self.module
        self._float_layers = {n: m for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notice pointing at torchao
            # one scale per output channel
            quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
        self._fast_layers = {n: module.get_submodule(n) for n in self._float_layers}

    def _swap_linear_layers(self, make: Callable[[torch.nn.Linear], torch.nn.Module]) -> None:
        """Replace every Linear layer by `make(layer)`, keeping the float layers."""
        self._float_layers = {n: m for n, m in self.module.named_modules() if isinstance(m, torch.nn.Linear)}
        self._fast_layers = {n: make(m) for n, m in self._float_layers.items()}
        for name, layer in self._fast_layers.items():
            self.module.set_submodule(name, layer)

    def _cast_rest(self, dtype: torch.dtype) -> None:
        """Cast the module's other float weights and buffers (the Linear layers
        are swapped already) to `dtype`, keeping their values for saving."""
        self._float_rest = {
            name: tensor.detach().clone()
            for name, tensor in self.module.state_dict().items()
            if tensor.is_floating_point() and tensor.dtype != dtype
        }
        # only what state_dict holds: non-persistent buffers (e.g. rotary frequencies) keep their dtype
        _set_tensors(self.module, {name: tensor.to(dtype) for name, tensor in self._float_rest.items()})

    @contextlib.contextmanager
    def float_weights(self) -> Iterator[None]:
        """Put the original float Linear layers (and, after bf16-full, the
        other float weights) back for the duration (saving)."""
        for name, layer in self._float_layers.items():
            self.module.set_submodule(name, layer)
        fast_rest = _set_tensors(self.module, self._float_rest)
        try:
            yield
        finally:
            _set_tensors(self.module, fast_rest)
            for name, layer in self._fast_layers.items():
                self.module.set_submodule(name, layer)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The context a prediction runs in: threads, inference mode and autocast, as set."""
        threads, before = int(self.options.torch_threads), torch.get_num_threads()
        with contextlib.ExitStack() as stack:
            if threads and threads != before:  # for this call only: other models keep their own
                torch.set_num_threads(threads)
                stack.callback(torch.set_num_threads, before)
            if self.options.inference_mode:
                stack.enter_context(torch.inference_mode())
            if self.module is not None and self.options.autocast != "none":
                dtype = torch.bfloat16 if self.options.autocast == "bf16" else torch.float16
                stack.enter_context(torch.autocast(device_type=self.device_type, dtype=dtype))
            yield


def _set_tensors(module: torch.nn.Module, tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Give the module's parameters and buffers named in `tensors` those values
    (dtype included); RETURNS the values they had."""
    previous = {}
    for name, value in tensors.items():
        owner, _, attr = name.rpartition(".")
        current = getattr(module.get_submodule(owner) if owner else module, attr)
        previous[name] = current.data
        current.data = value
    return previous


def _torch_cpu_check(name: str) -> bool:
    check = getattr(torch.cpu, name, None)
    return bool(check()) if check is not None else False


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX tiles), as
    torch's CPU feature checks report it; False where torch can't tell."""
    return _torch_cpu_check("_is_avx512_bf16_supported") or amx_cpu()


def amx_cpu() -> bool:
    """Whether this CPU has AMX tiles (bf16 matrix products in hardware), as
    torch reports it; False where torch can't tell."""
    return _torch_cpu_check("_is_amx_tile_supported")


BF16_ROWS = 64
"""Bf16Linear pads its input rows to a multiple of this: few distinct matrix
shapes, so that oneDNN's cache of compiled bf16 kernels (one per shape, up to
1,024 of them) stays small instead of growing with every batch size."""


class Bf16Linear(torch.nn.Module):
    """A Linear layer with bf16 weights: bf16 matrix product, output in the
    input's dtype (float32 in, float32 out; bf16 in a bf16-full model). The
    weights are buffers: nothing here is trained."""

    def __init__(self, layer: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.register_buffer("weight", layer.weight.detach().to(torch.bfloat16))
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        n = rows.shape[0]
        pad = -n % BF16_ROWS
        if pad:
            rows = torch.nn.functional.pad(rows, (0, 0, 0, pad))
        out = torch.nn.functional.linear(rows, self.weight, self.bias)[:n]
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype=bfloat16"


def _outputs_to_float32(module, args, output):
    """Forward hook: cast a model output's low-precision float tensors to float32
    (under autocast the last hidden state may be bf16, which numpy can't hold)."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if hasattr(output, "keys"):  # transformers' ModelOutput
        for key in list(output.keys()):
            value = output[key]
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
                output[key] = value.float()
        return output
    return None
