"""Speed settings of `emotion_classifier` and the torch runtime that applies them.

:class:`SpeedOptions` is what the component's config holds (length-bucketed
batches, inference mode, torch threads, dynamic int8 quantization, bf16/fp16
autocast); :class:`TorchRuntime` applies them to the predictor's torch module;
:func:`length_batches` cuts texts into length buckets. The defaults change
nothing. Measured speed and accuracy of each: benchmarks/RESULTS.md.
"""
import contextlib
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

if TYPE_CHECKING:
    import torch


QUANTIZE_MODES = ("none", "int8")
AUTOCAST_MODES = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class SpeedOptions:
    """How a predictor runs its torch model. The defaults change nothing.

    sort_by_length (bool): length-bucketed model batches. The texts (HF
        backend: the windows) are sorted by length and cut into batches of at
        most `batch_tokens` padded tokens, so that little padding is computed;
        results keep the input order. The spaCy backend already sorts each
        batch by length in spacy-transformers (its `max_batch_items`: 512
        spaCy tokens in configs/trf.cfg, 4096 in spacy-transformers'
        default and in pipelines trained before that setting); there the option sets
        that budget to `batch_tokens`, which cuts a batch into tighter
        length buckets.
    batch_tokens (int): padded tokens per model batch with sort_by_length
        (wordpieces for the HF backend, spaCy tokens for the spaCy backend).
    inference_mode (bool): run the model under `torch.inference_mode()`
        (the spaCy backend otherwise runs it under thinc's `torch.no_grad()`;
        the HF backend always uses inference mode).
    torch_threads (int): `torch.set_num_threads(n)` when the model loads and
        in any thread that runs it (the setting then stays in that thread);
        0 keeps torch's setting (one thread per core). On a small or busy
        machine fewer threads can be faster.
    quantize (str): "none", or "int8": dynamic int8 quantization of the
        transformer's Linear layers (torch.ao.quantization.quantize_dynamic,
        weights scaled per output channel; CPU only, fast on CPUs with
        AVX-512 VNNI). Saving the pipeline still
        writes the original float weights.
    autocast (str): "none", "bf16" or "fp16": run the transformer under
        `torch.autocast` in that dtype (bf16 is fast on CPUs with AVX-512
        BF16 and on recent GPUs); outputs are cast back to float32. Not
        together with int8.
    """

    sort_by_length: bool = False
    batch_tokens: int = 512
    inference_mode: bool = False
    torch_threads: int = 0
    quantize: str = "none"
    autocast: str = "none"

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}")
        if self.autocast not in AUTOCAST_MODES:
            raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}, got {self.autocast!r}")
        if self.quantize != "none" and self.autocast != "none":
            raise ValueError("quantize='int8' and autocast can't be combined: int8 layers take float32 inputs only")
        if int(self.torch_threads) < 0:
            raise ValueError(f"torch_threads must be >= 0 (0 = torch's default), got {self.torch_threads}")
        if int(self.batch_tokens) < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {self.batch_tokens}")

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
    """Applies SpeedOptions to one torch module: quantization, autocast, modes.

    The module is changed in place (it stays the one its owner uses):
    int8 swaps its Linear layers for dynamically quantized ones and keeps the
    float layers, so that :meth:`float_weights` can put them back for saving.
    """

    def __init__(self, module: Optional["torch.nn.Module"], options: SpeedOptions) -> None:
        import torch

        self.module = module
        self.options = options
        self._float_layers: Dict[str, "torch.nn.Module"] = {}
        self._int8_layers: Dict[str, "torch.nn.Module"] = {}
        self._hook = None
        if options.torch_threads:
            torch.set_num_threads(int(options.torch_threads))
        if module is None:
            if options.quantize != "none" or options.autocast != "none":
                warnings.warn("quantize/autocast ignored: this emotion model has no transformer (torch) layers.")
            return
        if options.quantize == "int8":
            self._quantize_int8()
        if options.autocast != "none":
            self._hook = module.register_forward_hook(_outputs_to_float32)

    @property
    def device_type(self) -> str:
        if self.module is None:
            return "cpu"
        param = next(self.module.parameters(), None)
        return param.device.type if param is not None else "cpu"

    def _quantize_int8(self) -> None:
        import torch
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        if self.device_type != "cpu":
            raise ValueError("quantize='int8' (dynamic quantization) runs on the CPU only; use autocast on the GPU.")
        module = self.module
        self._float_layers = {n: m for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notice pointing at torchao
            # one scale per output channel: on the emotion MiniLM it kept more test labels than one per tensor, at the same speed
            quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
        self._int8_layers = {n: module.get_submodule(n) for n in self._float_layers}

    @contextlib.contextmanager
    def float_weights(self) -> Iterator[None]:
        """Put the original float Linear layers back for the duration (saving)."""
        for name, layer in self._float_layers.items():
            self.module.set_submodule(name, layer)
        try:
            yield
        finally:
            for name, layer in self._int8_layers.items():
                self.module.set_submodule(name, layer)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The context a prediction runs in: threads, inference mode and autocast, as set."""
        import torch

        threads = int(self.options.torch_threads)
        if threads and torch.get_num_threads() != threads:  # e.g. a server's model thread
            torch.set_num_threads(threads)
        with contextlib.ExitStack() as stack:
            if self.options.inference_mode:
                stack.enter_context(torch.inference_mode())
            if self.module is not None and self.options.autocast != "none":
                dtype = torch.bfloat16 if self.options.autocast == "bf16" else torch.float16
                stack.enter_context(torch.autocast(device_type=self.device_type, dtype=dtype))
            yield


def _outputs_to_float32(module, args, output):
    """Forward hook: cast a model output's low-precision float tensors to float32
    (under autocast the last hidden state may be bf16, which numpy can't hold)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if hasattr(output, "keys"):  # transformers' ModelOutput
        for key in list(output.keys()):
            value = output[key]
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
                output[key] = value.float()
        return output
    return None
