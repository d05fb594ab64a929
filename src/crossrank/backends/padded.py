"""The reference path: any Hugging Face sequence-classification cross-encoder, batches padded to their longest pair."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from crossrank.core.tokenize import EncodedPair


class PaddedBackend:
    name = "padded"
    padded = True

    def __init__(self, model: Any, *, pad_token_id: int, device: torch.device, dtype: torch.dtype) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.device = device
        self.dtype = dtype

    @torch.inference_mode()
    def forward(self, batch: Sequence[EncodedPair]) -> torch.Tensor:
        longest = max(len(p) for p in batch)
        ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        types = torch.zeros((len(batch), longest), dtype=torch.long) if batch[0].token_type_ids is not None else None
        for row, pair in enumerate(batch):
            n = len(pair)
            ids[row, :n] = torch.tensor(pair.input_ids)
            mask[row, :n] = 1
            if types is not None and pair.token_type_ids is not None:
                types[row, :n] = torch.tensor(pair.token_type_ids)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            inputs["token_type_ids"] = types
        non_blocking = self.device.type == "cuda"
        inputs = {k: v.to(self.device, non_blocking=non_blocking) for k, v in inputs.items()}
        logits = self.model(**inputs, return_dict=True).logits
        return logits.view(-1).float()
