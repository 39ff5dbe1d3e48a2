"""transformers backend of the LLM rewriter: in-process, CPU or GPU, batched ``generate``.

Loads the tokenizer and ``AutoModelForCausalLM`` through :func:`models.weights.resolve` (the packaged
SmolLM2 GGUF is dequantised to fp32; a hub id or local folder works too), renders the chat template with
``add_generation_prompt=True``, pads on the LEFT and decodes only the new tokens.

Greedy (``num_beams=1``) stops a sequence early once its first content line is complete in ``rewrite``
mode (the rest would be thrown away by :func:`~models.rewrite.prompt.postprocess`, so the output is the
same). Outputs that need a retry are generated once more with sampling, each with its own seed
(:mod:`models.rewrite.retry`, the policy the vLLM backend follows too).

``cfg.torch_threads`` sets torch's (process-wide) thread count while generating: on a busy 2-core machine
1 thread was 10x faster than 2 (OpenMP spin-waiting when another process holds a core).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, StoppingCriteria
from transformers import StoppingCriteriaList

from models.cpu import warn_if_slow_bf16
from models.rewrite.config import RewriteConfig
from models.rewrite.parse import first_line_done
from models.rewrite.prompt import input_hash
from models.rewrite.retry import with_retries
from models.weights import resolve

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


class _FirstLineStop(StoppingCriteria):
    """Per-sequence stop once the decoded new text holds a complete first content line."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        last = self.tokenizer.batch_decode(input_ids[:, -1:], skip_special_tokens=True)
        for i, piece in enumerate(last):
            if "\n" in piece:  # only a newline can complete a line: decode the whole row only then
                text = self.tokenizer.decode(input_ids[i, self.prompt_len :], skip_special_tokens=True)
                done[i] = first_line_done(text)
        return done


class HFRewriter:
    """Holds one loaded model; :meth:`rewrite` turns chat messages into (teacher text, attempts)."""

    def __init__(self, cfg: RewriteConfig):
        self.cfg = cfg
        ref = resolve(cfg.model)
        dtype = getattr(torch, cfg.dtype) if cfg.dtype != "auto" else "auto"
        self.tokenizer = AutoTokenizer.from_pretrained(ref.path, **ref.kwargs)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=dtype, **ref.kwargs)
        self.model.eval()
        if self.model.dtype == torch.bfloat16 and self.device.type == "cpu":
            warn_if_slow_bf16(f"rewrite with {cfg.model}", "rewrite.dtype=float32")
        self.generate_calls = 0  # model.generate invocations (for tests and stats)
        self.sequences = 0  # sequences generated, retries included

    @classmethod
    def from_loaded(cls, cfg: RewriteConfig, model, tokenizer) -> "HFRewriter":
        """A rewriter around a model already in memory (e.g. one being fine-tuned, models/rewriter/): the same
        prompt rendering, batching, stopping and retries as a loaded one; ``cfg.model`` is not read."""
        self = object.__new__(cls)
        self.cfg, self.model, self.tokenizer = cfg, model, tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.generate_calls = 0
        self.sequences = 0
        return self

    def with_config(self, cfg: RewriteConfig) -> "HFRewriter":
        """A rewriter sharing this one's loaded model, with other generation settings (same model/dtype)."""
        if (cfg.model, cfg.dtype) != (self.cfg.model, self.cfg.dtype):
            raise ValueError(f"loaded {self.cfg.model}/{self.cfg.dtype}, asked for {cfg.model}/{cfg.dtype}")
        other = object.__new__(HFRewriter)
        other.__dict__.update(self.__dict__)
        other.cfg = cfg
        other.generate_calls = 0
        other.sequences = 0
        return other

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _gen_config(self, sample: bool) -> GenerationConfig:
        cfg = self.cfg
        common = dict(
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id,
        )
        if sample:
            return GenerationConfig(
                do_sample=True, temperature=cfg.retry_temperature, top_p=cfg.retry_top_p, top_k=0, **common
            )
        return GenerationConfig(do_sample=False, num_beams=cfg.num_beams, **common)

    def generate_raw(self, messages: Sequence[Messages], sample: bool = False) -> list[str]:
        """One batched ``generate`` over all ``messages``; the decoded new text of each (no postprocess)."""
        prompts = [
            self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages
        ]
        # The chat template already holds the special tokens (BOS etc.).
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        stopping = None
        if self.cfg.mode == "rewrite" and (sample or self.cfg.num_beams == 1):
            stopping = StoppingCriteriaList([_FirstLineStop(self.tokenizer, prompt_len)])
        threads = torch.get_num_threads()
        if self.cfg.torch_threads:
            torch.set_num_threads(self.cfg.torch_threads)
        try:
            with torch.inference_mode():
                out = self.model.generate(
                    **enc, generation_config=self._gen_config(sample), stopping_criteria=stopping
                )
        finally:
            torch.set_num_threads(threads)
        self.generate_calls += 1
        self.sequences += len(prompts)
        return self.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)

    def rewrite(self, messages: Sequence[Messages]) -> list[tuple[str, int]]:
        """(teacher text, attempts) per conversation, in batches of ``cfg.batch_size`` formed by prompt length
        (a deterministic function of ``messages``, so a resumed chunk is batched as before)."""
        # Batch prompts of similar length together (less padding); results go back in the input order.
        order = sorted(range(len(messages)), key=lambda i: sum(len(m["content"]) for m in messages[i]))
        results: list[tuple[str, int] | None] = [None] * len(messages)
        bs = self.cfg.batch_size
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            for i, out in zip(idx, self._rewrite_batch([messages[i] for i in idx])):
                results[i] = out
        return results  # type: ignore[return-value]

    def _rewrite_batch(self, messages: Sequence[Messages]) -> list[tuple[str, int]]:
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []

        def sample(indices: list[int], seeds: list[int]) -> list[str]:
            out = []
            for i, seed in zip(indices, seeds):  # one call each: a batch shares one random stream
                with torch.random.fork_rng(devices=cuda):  # the caller's random state stays as it was
                    torch.manual_seed(seed)
                    out += self.generate_raw([messages[i]], sample=True)
            return out

        done = with_retries(self.generate_raw(messages), [input_hash(m) for m in messages], self.cfg, sample)
        return [(r.text, r.attempts) for r in done]
