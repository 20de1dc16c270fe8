"""SpecDETR: a transformer that detects (sub-)pixel point objects in hyperspectral images.

Li, Z., An, W., Guo, G., Wang, L., Wang, Y., Lin, Z. "SpecDETR: A transformer-based
hyperspectral point object detection network", ISPRS Journal of Photogrammetry and
Remote Sensing 226:221-246, 2025 (arXiv:2405.10148). Reference code (mmdetection 3.0):
github.com/ZhaoxuLi123/SpecDETR, ``configs/specdetr/SpecDETR_SPOD_100e.py``.

This is an independent PyTorch re-implementation of the network described there; the
sizes and defaults below are read from the paper and the authors' SPOD config.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError, DataError
from hsi.models.registry import register_model


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with clamping, so boxes at 0 or 1 stay finite (DETR's box refinement)."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def sine_position_embedding(
    height: int, width: int, num_feats: int, temperature: float, device: torch.device
) -> torch.Tensor:
    """(height·width, 2·num_feats) sine/cosine embedding of normalised (row, col) positions.

    DETR's parameter-free embedding with ``normalize=True``: positions 1..n are divided by
    n and scaled to (0, 2π]; the first ``num_feats`` channels encode the row, the rest the
    column, alternating sin/cos. SpecDETR uses temperature 20 (not DETR's 10000) because
    its images are small (SPOD: 128×128) and a low temperature keeps neighbouring pixels
    distinguishable.
    """
    scale, eps = 2 * math.pi, 1e-6
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device) / (height + eps)
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device) / (width + eps)
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def encode(v: torch.Tensor) -> torch.Tensor:
        p = v[:, None] * scale / dim_t
        return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(rows)[:, None, :].expand(height, width, num_feats)
    pos_x = encode(cols)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=-1).reshape(height * width, 2 * num_feats)


def box_sine_encoding(boxes: torch.Tensor, num_feats: int, temperature: float = 10000.0):
    """(…, 4·num_feats) sine encoding of normalised (cx, cy, w, h) reference boxes.

    The decoder turns each query's current reference box into its positional query
    through this encoding and a 2-layer MLP (DINO's conditional queries); the channel
    order is (y, x, w, h) as in the reference code.
    """
    scale = 2 * math.pi
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def encode(v: torch.Tensor) -> torch.Tensor:
        p = v[..., None] * scale / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    x, y, w, h = boxes.unbind(-1)
    return torch.cat((encode(y), encode(x), encode(w), encode(h)), dim=-1)


class SubpixelDeformableAttention(nn.Module):
    """Multi-level deformable attention at sub-pixel sampling locations.

    Each query predicts, per head, level and point, a continuous offset from its
    reference point and a softmax weight; the value map is read there by bilinear
    interpolation, so a token can attend to a fraction of a pixel (Deformable DETR, Zhu
    et al. ICLR 2021, which SpecDETR's attention builds on). SpecDETR's encoder uses it
    with two levels: the pixel grid and one global token (the mean feature of the image).
    The attention output is added to the query itself (the residual); since a pixel's
    own token is among the values it samples, an object's feature excites itself and
    is amplified layer after layer: the paper's "self-excited" mechanism.

    Offsets start on a star: head ``m`` looks in direction ``2πm/heads`` at 1, 2, …,
    ``num_points`` units (pixels for point references, quarter half-box sizes for box
    references); attention weights start uniform. Pure PyTorch (``grid_sample``), no
    compiled kernel, so it runs on CPU and GPU alike.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 2,
        num_points: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ConfigError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.num_levels, self.num_points = num_levels, num_points
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        star = torch.stack((theta.cos(), theta.sin()), -1)
        star = star / star.abs().max(-1, keepdim=True).values
        star = star[:, None, None, :].repeat(1, self.num_levels, self.num_points, 1)
        star = star * torch.arange(1, self.num_points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(star.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def sampling_locations(
        self, query: torch.Tensor, reference: torch.Tensor, shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """(B, Nq, heads, levels, points, 2) normalised (x, y) locations read by each query."""
        b, n, _ = query.shape
        off = self.sampling_offsets(query).view(
            b, n, self.num_heads, self.num_levels, self.num_points, 2
        )
        if reference.shape[-1] == 2:
            norm = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
            return reference[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
        if reference.shape[-1] == 4:
            centre = reference[:, :, None, :, None, :2]
            half = reference[:, :, None, :, None, 2:] * 0.5
            return centre + off / self.num_points * half
        raise ValueError(f"reference points must end in 2 or 4 values, got {reference.shape}")

    def forward(
        self,
        query: torch.Tensor,
        query_pos: torch.Tensor | None,
        value: torch.Tensor,
        reference: torch.Tensor,
        shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """``query`` (B, Nq, D), ``value`` (B, Σh·w, D), ``reference`` (B, Nq, levels, 2|4)."""
        identity = query
        q = query if query_pos is None else query + query_pos
        b, nq, _ = q.shape
        heads, dh = self.num_heads, self.embed_dim // self.num_heads
        v = self.value_proj(value).view(b, -1, heads, dh)
        loc = self.sampling_locations(q, reference, shapes)
        weights = self.attention_weights(q).view(b, nq, heads, -1).softmax(-1)
        sampled = []
        start = 0
        for level, (h, w) in enumerate(shapes):
            v_l = v[:, start : start + h * w].permute(0, 2, 3, 1).reshape(b * heads, dh, h, w)
            start += h * w
            grid = 2 * loc[:, :, :, level] - 1  # (B, Nq, heads, P, 2) in [-1, 1]
            grid = grid.transpose(1, 2).reshape(b * heads, nq, self.num_points, 2)
            sampled.append(
                F.grid_sample(v_l, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            )
        values = torch.stack(sampled, dim=-2).flatten(-2)  # (B·heads, dh, Nq, L·P)
        weights = weights.transpose(1, 2).reshape(b * heads, 1, nq, -1)
        out = (values * weights).sum(-1).view(b, heads * dh, nq).transpose(1, 2)
        return identity + self.dropout(self.output_proj(out))


class FeedForward(nn.Module):
    """Linear-ReLU-Linear with its residual (mmcv's FFN as SpecDETR configures it)."""

    def __init__(self, embed_dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class SpecDETRLayer(nn.Module):
    """Post-norm block: deformable attention (+residual), LayerNorm, FFN (+residual), LayerNorm.

    The encoder uses it as self-attention over all tokens, the decoder as the only
    attention of a query (cross-attention to the encoder memory): SpecDETR's decoder
    has no query self-attention, because its one-to-many assignment wants neighbouring
    queries to predict the same point object rather than suppress each other.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, num_levels: int, num_points: int, ffn_dim: int,
        dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.attn = SubpixelDeformableAttention(
            embed_dim, num_heads, num_levels, num_points, dropout
        )
        self.norm1 = nn.LayerNorm(embed_dim)
        self.ffn = FeedForward(embed_dim, ffn_dim, dropout)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(
        self,
        query: torch.Tensor,
        query_pos: torch.Tensor,
        value: torch.Tensor,
        reference: torch.Tensor,
        shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        x = self.norm1(self.attn(query, query_pos, value, reference, shapes))
        return self.norm2(self.ffn(x))


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@register_model("specdetr")
class SpecDETR(nn.Module):
    """SpecDETR (Li et al., ISPRS P&RS 2025) for multi-class point object detection.

    Every pixel is a token; there is no pretrained backbone. Sizes (paper and the SPOD
    config ``SpecDETR_SPOD_100e.py``; defaults here):

    - token embedding: 1×1 convolution ``in_bands``→256 and LayerNorm; a second level
      holds one global token, the (detached) mean of all pixel tokens;
    - sine position embedding (temperature 20) plus a learned per-level embedding;
    - encoder: 6 post-norm layers of self-excited sub-pixel deformable attention
      (256 dims, 8 heads, 2 levels, 4 points per head and level) and an FFN of
      2048 (= 8×256) with ReLU; no dropout;
    - two-stage query selection: each pixel token proposes a box centred on the pixel of
      side 0.01 (normalised; 0.02 for the global level), scored by the 7th class head;
      the top ``num_queries`` = 900 (global token excluded) become the decoder's
      reference boxes, with content queries all ones;
    - decoder: 6 layers of deformable cross-attention (8 heads, 2 levels, 4 points) and
      FFN 2048, no self-attention, iterative box refinement; positional queries from
      the reference boxes by a 512→256→256 MLP;
    - heads: per decoder layer (and one for the encoder proposals) a Linear class head
      (sigmoid, focal loss) and a 3-layer box MLP 256→256→256→4.

    With 30 bands and 8 classes (SPOD) this has 16,009,556 parameters; the reference
    implementation also builds an unused patch embedding and MLP in its backbone
    (82,176 parameters), giving the 16,091,732 = "16.1M" of the authors' table.

    Training-only parts not in this module: the contrastive denoising queries (CDN) of
    the reference code are not implemented (they add no parameters with
    ``query_initial='one'``); the one-to-many Hungarian loss is
    :class:`hsi.detection.matching.SetCriterion`.

    Forward: ``(B, in_bands, H, W)`` → ``{"logits": (B, Q, num_classes), "boxes": (B, Q,
    4) normalised (cx, cy, w, h), "aux": [per earlier decoder layer, same keys],
    "enc": {proposal logits/boxes}}`` with ``Q = min(num_queries, H·W)``.
    """

    def __init__(
        self,
        in_bands: int = 30,
        num_classes: int = 8,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_points: int = 4,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        ffn_dim: int = 2048,
        num_queries: int = 900,
        global_token: bool = True,
        proposal_size: float = 0.01,
        pos_temperature: float = 20.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_bands < 1 or num_classes < 1:
            raise ConfigError(
                f"in_bands and num_classes must be >= 1, got {in_bands}, {num_classes}"
            )
        if embed_dim % 2:
            raise ConfigError(f"embed_dim must be even (sine position embedding), got {embed_dim}")
        if decoder_layers < 1 or encoder_layers < 0 or num_queries < 1:
            raise ConfigError(
                "SpecDETR needs decoder_layers >= 1, encoder_layers >= 0, num_queries >= 1"
            )
        self.in_bands, self.num_classes = in_bands, num_classes
        self.embed_dim, self.num_queries = embed_dim, num_queries
        self.global_token = global_token
        self.num_levels = 2 if global_token else 1
        self.proposal_size, self.pos_temperature = proposal_size, pos_temperature

        self.embed = nn.Conv2d(in_bands, embed_dim, kernel_size=1)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.level_embed = nn.Parameter(torch.empty(self.num_levels, embed_dim))
        layer = dict(
            embed_dim=embed_dim, num_heads=num_heads, num_levels=self.num_levels,
            num_points=num_points, ffn_dim=ffn_dim, dropout=dropout,
        )  # fmt: skip
        self.encoder = nn.ModuleList(SpecDETRLayer(**layer) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(SpecDETRLayer(**layer) for _ in range(decoder_layers))
        self.ref_point_head = _mlp([2 * embed_dim, embed_dim, embed_dim])
        self.decoder_norm = nn.LayerNorm(embed_dim)
        self.memory_proj = nn.Linear(embed_dim, embed_dim)
        self.memory_norm = nn.LayerNorm(embed_dim)
        # one class/box head per decoder layer, plus one for the encoder proposals
        n_heads = decoder_layers + 1
        self.class_heads = nn.ModuleList(nn.Linear(embed_dim, num_classes) for _ in range(n_heads))
        self.box_heads = nn.ModuleList(
            _mlp([embed_dim, embed_dim, embed_dim, 4]) for _ in range(n_heads)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.encoder, self.decoder):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, SubpixelDeformableAttention):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.memory_proj.weight)
        nn.init.normal_(self.level_embed)
        prior = -math.log((1 - 0.01) / 0.01)  # focal-loss prior: every class starts at p = 0.01
        for head in self.class_heads:
            nn.init.constant_(head.bias, prior)
        for head in self.box_heads:
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    # ---- encoder -------------------------------------------------------------------------
    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        b, _, h, w = x.shape
        t = self.embed_norm(self.embed(x).flatten(2).transpose(1, 2))  # (B, HW, D)
        shapes = [(h, w)]
        if self.global_token:
            t = torch.cat((t, t.mean(dim=1, keepdim=True).detach()), dim=1)
            shapes.append((1, 1))
        return t, shapes

    def _positions(self, shapes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        parts = [
            sine_position_embedding(h, w, self.embed_dim // 2, self.pos_temperature, device)
            + self.level_embed[lvl]
            for lvl, (h, w) in enumerate(shapes)
        ]
        return torch.cat(parts, dim=0)[None]

    @staticmethod
    def _centres(shapes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """(Σh·w, 2) normalised (x, y) centres of every token of every level."""
        out = []
        for h, w in shapes:
            ys, xs = torch.meshgrid(
                (torch.arange(h, device=device) + 0.5) / h,
                (torch.arange(w, device=device) + 0.5) / w,
                indexing="ij",
            )
            out.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), -1))
        return torch.cat(out, dim=0)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Memory (B, Σh·w, D) of the encoder: pixel tokens then the global token."""
        tokens, shapes = self._tokens(x)
        pos = self._positions(shapes, x.device)
        ref = self._centres(shapes, x.device)[None, :, None, :].expand(
            x.shape[0], -1, len(shapes), -1
        )
        for layer in self.encoder:
            tokens = layer(tokens, pos, tokens, ref, shapes)
        return tokens, shapes

    # ---- two-stage proposals and decoder -----------------------------------------------
    def _proposals(
        self, memory: torch.Tensor, shapes: list[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and unsigmoided boxes proposed by each pixel token."""
        centres = self._centres(shapes, memory.device)
        sizes = torch.cat(
            [
                torch.full((h * w, 2), self.proposal_size * 2.0**lvl, device=memory.device)
                for lvl, (h, w) in enumerate(shapes)
            ]
        )
        anchors = inverse_sigmoid(torch.cat((centres, sizes), -1), eps=1e-12)
        out_memory = self.memory_norm(self.memory_proj(memory))
        n_pix = shapes[0][0] * shapes[0][1]  # the global token proposes no box
        out_memory, anchors = out_memory[:, :n_pix], anchors[:n_pix]
        logits = self.class_heads[-1](out_memory)
        boxes = self.box_heads[-1](out_memory) + anchors
        return logits, boxes

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        if x.ndim != 4:
            raise DataError(
                f"SpecDETR takes (batch, bands, height, width), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_bands:
            raise DataError(
                f"the images have {x.shape[1]} bands but the model was built for {self.in_bands}; "
                "use data with the bands the model was trained on, or retrain"
            )
        memory, shapes = self.encode(x)
        enc_logits, enc_boxes = self._proposals(memory, shapes)
        k = min(self.num_queries, enc_logits.shape[1])
        top = enc_logits.max(-1).values.topk(k, dim=1).indices
        top_logits = enc_logits.gather(1, top[..., None].expand(-1, -1, self.num_classes))
        top_boxes = enc_boxes.gather(1, top[..., None].expand(-1, -1, 4))
        reference = top_boxes.detach().sigmoid()
        query = memory.new_ones(x.shape[0], k, self.embed_dim)

        outputs = []
        head_reference = reference
        for lid, layer in enumerate(self.decoder):
            ref_in = reference[:, :, None].expand(-1, -1, self.num_levels, -1)
            pos = self.ref_point_head(box_sine_encoding(reference, self.embed_dim // 2))
            query = layer(query, pos, memory, ref_in, shapes)
            hidden = self.decoder_norm(query)
            logits = self.class_heads[lid](hidden)
            boxes = (self.box_heads[lid](hidden) + inverse_sigmoid(head_reference)).sigmoid()
            outputs.append({"logits": logits, "boxes": boxes})
            # iterative refinement: the next layer samples around this layer's box. Its
            # attention sees a detached box, but its prediction head refines the box with
            # gradient (DINO's "look forward twice", as in the reference code).
            refined = self.box_heads[lid](query) + inverse_sigmoid(reference, eps=1e-3)
            head_reference = refined.sigmoid()
            reference = head_reference.detach()
        last = outputs[-1]
        return {
            "logits": last["logits"],
            "boxes": last["boxes"],
            "aux": outputs[:-1],
            "enc": {"logits": top_logits, "boxes": top_boxes.sigmoid()},
        }
