"""Training an embedder: one loop for the three methods.

* ``triplet``: ``batch_size`` triplets per step drawn uniformly (``UniformTripletSampler``); all 3B images are
  embedded together and each (anchor, positive) gets its negative re-mined inside the batch (semi-hard by
  default, ``hard`` optional, ``none`` keeps the sampled negative); FaceNet eq. (1) with margin ``alpha``.
* ``pair``: ``batch_size`` pairs per step (``UniformPairSampler``, half same, half different); DeepFace 4.2
  weighted-distance logistic unit, binary cross-entropy.
* ``softmax``: ``batch_size`` images per step (epochs over a shuffled list), CosFace/ArcFace head.
* ``distill``: ``batch_size`` images per step, each regressed onto a teacher's embedding of the same chip
  (``teacher.npz`` from ``training.chips``; the mirrored chip's vector when the augmentation flipped it;
  centred on the teacher's mean over the training chips and renormalised):
  ``1 - cos(student, teacher)``, plus ``distill_relation`` x the mean squared difference of the in-batch
  cosine-similarity matrices (so the student keeps the teacher's distances between people, which is what
  verification reads), plus ``distill_margin_weight`` x a CosFace loss on the identities where labels exist.
  Augmented copies keep the clean chip's target, which teaches the student the teacher's invariances.

``device``: ``auto`` trains on a GPU when torch sees one (bf16 autocast there), else on the CPU.

Every ``eval_every`` steps the model is verified on dev pairs (k-fold accuracy, AUC, TAR@FAR), logged to
``log.jsonl``, and checkpointed; ``patience`` evaluations without improvement stop training early. The output
directory holds ``checkpoint.pt`` (everything to resume), ``model.pt`` + ``model.json`` (the embedder of the last
step and its model card) and ``best/`` (the best on dev, when dev pairs are given).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from iznet import __version__
from iznet.embedding.networks import NETWORKS, create_network
from iznet.embedding.preprocess import Preprocess, to_tensor
from iznet.errors import NotFoundError, PreconditionError, UserInputError
from iznet.sizes import EMBEDDING_DIM
from iznet.store import sha256_file
from iznet.evaluation.verification import pair_distances, verification_report
from training.data import (FaceSet, PairList, augment_batch, center_batch, load_faceset, load_pair_images,
                           load_pairs)
from training.losses import MarginSoftmax, PairClassifier, mine_negatives, triplet_loss
from training.progress import BudgetBar
from training.samplers import UniformPairSampler, UniformTripletSampler

METHODS = ("triplet", "pair", "softmax", "distill")
#: the training crops are this much larger than the network input, for random crops
TRAIN_PAD = 1.125


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/embedder"
    network: str = "small"
    method: str = "softmax"
    input_size: int | None = None       # None: the network's default
    width: float = 1.0
    crop_fraction: float = 1.0          # centre of the dataset crop kept (raw LFW 250x250: ~0.45)
    embedding_dim: int = EMBEDDING_DIM
    net_args: dict = field(default_factory=dict)  # extra network keyword arguments, e.g. {"cells": [4, 8, 16]}
    # data selection
    pairs: str | None = None            # LFW-format pairs file naming held-out / dev people
    exclude_folds: list[int] = field(default_factory=list)  # people in these folds' pairs are not trained on
    dev_folds: list[int] = field(default_factory=list)      # pairs used for periodic verification
    dev_pairs: str | None = None        # a separate dev pairs file (all its pairs); overrides dev_folds
    split: str | None = "train"         # with a built dataset: which split to train on
    min_images: int = 1                 # people with fewer images are dropped
    # optimisation (the study: SGD momentum 0.9, batch 32)
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32
    schedule: str = "cosine"            # cosine | step | constant
    warmup_steps: int = 100
    steps: int = 1000
    max_minutes: float | None = None    # wall-clock budget; the schedule follows time when set
    # methods
    alpha: float = 0.2
    mining: str = "semihard"            # semihard | hard | none
    pair_distance: str = "l1"
    margin_kind: str = "cosface"
    margin: float | None = None
    scale: float = 30.0
    # distillation
    teacher: str | None = None          # teacher.npz (training.chips); default: <data>/teacher.npz
    distill_relation: float = 1.0
    distill_margin_weight: float = 0.0
    chip: str | None = None             # the face chip the model wants (card); default: the teacher's
    # augmentation
    augment: bool = True
    blur: float = 0.0                   # chance of a Gaussian blur per training image
    # periodic verification
    eval_every: int = 200
    patience: int = 0                   # 0: never stop early
    eval_flip: bool = True
    # reproducibility
    seed: int = 0
    threads: int = 1
    device: str = "auto"                # auto | cpu | cuda
    progress: bool = True

    def validate(self) -> None:
        if self.network not in NETWORKS:
            raise UserInputError(f"unknown network {self.network!r}; choose one of {', '.join(sorted(NETWORKS))}")
        if self.method not in METHODS:
            raise UserInputError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.mining not in ("semihard", "hard", "none"):
            raise UserInputError(f"unknown mining {self.mining!r}: semihard, hard or none")
        if self.batch_size < 2 or self.steps < 1:
            raise UserInputError("batch size must be >= 2 and steps >= 1")
        if not 0 < self.crop_fraction <= 1:
            raise UserInputError("crop fraction must be in (0, 1]")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise UserInputError(f"unknown optimizer {self.optimizer!r}: sgd, adam or adamw")
        if self.schedule not in ("cosine", "step", "constant"):
            raise UserInputError(f"unknown schedule {self.schedule!r}: cosine, step or constant")


def resolve_device(name: str) -> torch.device:
    """``auto``: the first GPU when torch sees one, else the CPU; ``cuda`` without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise UserInputError(f"unknown device {name!r}: auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PreconditionError(f"--device {name}: torch sees no GPU here (use auto or cpu)")
    return torch.device(name)




def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.no_grad()
def embed_array(model: torch.nn.Module, imgs: np.ndarray, pp: Preprocess, flip: bool = True,
                batch: int = 128) -> np.ndarray:
    """Embeddings of already-cropped (N, S, S, 3) uint8 BGR faces at the network's input size."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(imgs), batch):
        x = to_tensor(imgs[i:i + batch], pp.mean, pp.std).to(device)
        e = model(x).float()
        if flip:
            e = torch.nn.functional.normalize(e + model(torch.flip(x, dims=[3])).float(), dim=1)
        out.append(e.cpu().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0, EMBEDDING_DIM), np.float32)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None, callbacks: list | None = None):
        cfg.validate()
        self.cfg = cfg
        #: called as ``cb(trainer)`` before the first step and after every step (e.g. the analysis snapshots,
        #: ``training.analysis.snapshots.TrainerSnapshots``); ``cb.close(trainer)``, if present, at the end
        self.callbacks = list(callbacks or [])
        torch.set_num_threads(max(1, cfg.threads))
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        spec = NETWORKS[cfg.network]
        self.input_size = cfg.input_size or spec.input_size
        self.pp = Preprocess(self.input_size, cfg.crop_fraction)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_data()
        overrides = {"input_size": self.input_size, "width": cfg.width, **cfg.net_args}
        self.model = create_network(cfg.network, cfg.embedding_dim, **overrides)
        nclass = len(self.train.names)
        if cfg.method == "softmax" or (cfg.method == "distill" and cfg.distill_margin_weight > 0):
            self.head = MarginSoftmax(cfg.embedding_dim, nclass, cfg.margin_kind, cfg.scale, cfg.margin)
        elif cfg.method == "pair":
            self.head = PairClassifier(cfg.embedding_dim, cfg.pair_distance)
        else:
            self.head = torch.nn.Module()
        self.model.to(self.device)
        self.head.to(self.device)
        params = [{"params": self.model.parameters()}, {"params": self.head.parameters(), "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        labels = self.train.labels
        if cfg.method == "triplet":
            self.sampler = UniformTripletSampler(labels, seed=cfg.seed)
        elif cfg.method == "pair":
            self.sampler = UniformPairSampler(labels, seed=cfg.seed)
        else:
            self.sampler = None
        self.order, self.cursor, self.epoch = np.zeros(0, np.int64), 0, 0
        self.step, self.samples_seen, self.images_seen, self.elapsed = 0, 0, 0, 0.0
        self.cpu_s = 0.0  # process CPU seconds spent training (the machine may be shared: wall time overstates)
        self.best, self.bad_evals, self.history = None, 0, []
        if resume:
            self._resume(Path(resume))

    # ------------------------------------------------------------------------------------------ data
    def _load_data(self) -> None:
        cfg = self.cfg
        pairs = load_pairs(cfg.pairs) if cfg.pairs else None
        exclude = pairs.people(set(cfg.exclude_folds)) if pairs is not None and cfg.exclude_folds else set()
        base = int(round(self.input_size * TRAIN_PAD))
        self.train: FaceSet = load_faceset(cfg.data, min(1.0, cfg.crop_fraction * TRAIN_PAD), base,
                                           exclude_people=exclude, split=cfg.split, min_images=cfg.min_images)
        if cfg.crop_fraction * TRAIN_PAD > 1.0:  # no room around the crop: train at input size + resize jitter
            pass
        from iznet.data.align import ChipSpec

        self.chip = ChipSpec.parse(cfg.chip) if cfg.chip else None  # the crop the data holds (card)
        self.dev: PairList | None = None
        if cfg.dev_pairs:
            self.dev = load_pairs(cfg.dev_pairs)
        elif pairs is not None and cfg.dev_folds:
            self.dev = pairs.select(set(cfg.dev_folds))
        if self.dev is not None and len(self.dev):
            self.dev_left, self.dev_right = load_pair_images(cfg.data, self.dev, cfg.crop_fraction, self.input_size)
            overlap = self.dev.people() & set(self.train.names)
            self.dev_overlap = len(overlap)
        else:
            self.dev = None
        if cfg.method == "distill":
            self._load_teacher()
        if cfg.method in ("triplet", "pair"):
            counts = np.bincount(self.train.labels)
            if (counts >= 2).sum() < 1 or len(counts) < 2:
                raise PreconditionError("triplet/pair training needs a person with two images and two people")

    def _load_teacher(self) -> None:
        from iznet.data.align import ChipSpec

        path = Path(self.cfg.teacher) if self.cfg.teacher else Path(self.cfg.data) / "teacher.npz"
        if not path.is_file():
            raise NotFoundError(f"no teacher embeddings at {path}: make them with `python -m training.chips`")
        with np.load(path) as z:
            rows = {str(p): i for i, p in enumerate(z["paths"])}
            vec, vec_flip = z["embedding"], z["embedding_flip"]
            self.teacher_info = {"file": str(path), "version": json.loads(str(z["teacher"])),
                                 "chip": str(z["chip"])}
        missing = [p for p in self.train.paths if p not in rows]
        if missing:
            raise PreconditionError(f"{len(missing)} training chips have no teacher embedding in {path}, "
                                    f"e.g. {missing[0]}")
        take = [rows[p] for p in self.train.paths]
        # A teacher's vectors can share a large common component (dlib's lie in a cone: mean pairwise cosine
        # ~0.84); regressing onto them spends the loss on that mean. The student learns the centred,
        # renormalised vectors instead, which keep the teacher's verification (LFW fold 5: 0.985 -> 0.982).
        mean = vec[take].mean(0)

        def centred(v):
            v = v[take] - mean
            return torch.from_numpy(np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True), np.float32))

        self.teacher, self.teacher_flip = centred(vec), centred(vec_flip)
        self.teacher_info["centred_on_mean_of"] = len(take)
        self.chip = self.chip or ChipSpec.parse(self.teacher_info["chip"])

    # ------------------------------------------------------------------------------------------ batches
    def _images(self, idx: np.ndarray, flips: np.ndarray | None = None) -> torch.Tensor:
        imgs = self.train.images[idx]
        if self.cfg.augment:
            arr = augment_batch(imgs, self.input_size, self.rng, flips=flips, blur=self.cfg.blur)
        else:
            arr = center_batch(imgs, self.input_size)
        return to_tensor(arr, self.pp.mean, self.pp.std).to(self.device, non_blocking=True)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":  # bf16 autocast on GPUs; the loss is computed in float32
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.model(x).float()
        return self.model(x)

    def _next_images(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.cursor >= len(self.order):
                self.order = self.rng.permutation(len(self.train))
                self.cursor = 0
                self.epoch += 1
            take = self.order[self.cursor:self.cursor + k]
            self.cursor += len(take)
            k -= len(take)
            out.append(take)
        return np.concatenate(out)

    def _loss(self) -> tuple[torch.Tensor, dict]:
        cfg, B = self.cfg, self.cfg.batch_size
        if cfg.method == "softmax":
            idx = self._next_images(B)
            emb = self._forward(self._images(idx))
            loss = self.head(emb, torch.from_numpy(self.train.labels[idx]).to(self.device))
            self.images_seen += B
            return loss, {}
        if cfg.method == "distill":
            idx = self._next_images(B)
            flips = np.zeros(B, bool)
            emb = self._forward(self._images(idx, flips))
            t = torch.where(torch.from_numpy(flips)[:, None], self.teacher_flip[idx], self.teacher[idx])
            t = t.to(self.device)
            cos = 1 - (emb * t).sum(1).mean()
            rel = ((emb @ emb.T - t @ t.T) ** 2).mean()
            loss = cos + cfg.distill_relation * rel
            extra = {"cos": 1 - cos.item(), "rel": rel.item()}
            if cfg.distill_margin_weight > 0:
                loss = loss + cfg.distill_margin_weight * self.head(
                    emb, torch.from_numpy(self.train.labels[idx]).to(self.device))
            self.images_seen += B
            return loss, extra
        if cfg.method == "pair":
            trip = self.sampler.sample_batch(B)
            idx = np.concatenate([trip[:, 0], trip[:, 1]])
            emb = self._forward(self._images(idx))
            loss = self.head.loss(emb[:B], emb[B:], torch.from_numpy(trip[:, 2]).to(self.device))
            self.images_seen += 2 * B
            return loss, {"same_fraction": float(trip[:, 2].mean())}
        trip = self.sampler.sample_batch(B)
        idx = trip.T.reshape(-1)  # anchors, positives, negatives
        emb = self._forward(self._images(idx))
        labels = torch.from_numpy(self.train.labels[idx]).to(self.device)
        a, p, n = torch.arange(B), torch.arange(B, 2 * B), torch.arange(2 * B, 3 * B)
        semi_frac = 0.0
        if cfg.mining != "none":
            n, semi = mine_negatives(emb.detach(), labels, a, p, cfg.alpha, cfg.mining, fallback=n, generator=self.gen)
            semi_frac = float(semi.float().mean())
        loss = triplet_loss(emb[a], emb[p], emb[n], cfg.alpha)
        self.images_seen += 3 * B
        return loss, {"semihard_fraction": semi_frac}

    # ------------------------------------------------------------------------------------------ schedule
    def _lr(self) -> float:
        cfg = self.cfg
        if self.step < cfg.warmup_steps:
            return cfg.lr * (self.step + 1) / cfg.warmup_steps
        progress = self.step / cfg.steps
        if cfg.max_minutes:
            progress = max(progress, self.elapsed / (60 * cfg.max_minutes))
        progress = min(1.0, progress)
        if cfg.schedule == "cosine":
            return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
        if cfg.schedule == "step":
            return cfg.lr * (0.1 ** int(progress * 3 - 1e-9)) if progress > 0 else cfg.lr
        return cfg.lr

    # ------------------------------------------------------------------------------------------ eval
    def evaluate_dev(self) -> dict | None:
        if self.dev is None:
            return None
        e1 = embed_array(self.model, self.dev_left, self.pp, self.cfg.eval_flip)
        e2 = embed_array(self.model, self.dev_right, self.pp, self.cfg.eval_flip)
        folds = self.dev.fold if len(np.unique(self.dev.fold)) > 1 else 10
        rep = verification_report(pair_distances(e1, e2), self.dev.same, folds)
        rep.pop("roc")
        rep["identity_overlap_with_train"] = self.dev_overlap
        return rep

    # ------------------------------------------------------------------------------------------ loop
    def fit(self) -> dict:
        cfg = self.cfg
        t_start = time.time() - self.elapsed
        cpu_start = time.process_time() - self.cpu_s
        self.model.train()
        self.head.train()
        bar = BudgetBar(cfg.steps, cfg.max_minutes, self.step, self.elapsed, f"{cfg.network}/{cfg.method}",
                        disable=not cfg.progress)
        if self.step == 0 and self.dev is not None:
            self._log_eval()
        stop_reason = "steps"
        run_loss = None
        for cb in self.callbacks:
            cb(self)
        while self.step < cfg.steps:
            if cfg.max_minutes and self.elapsed >= cfg.max_minutes * 60:
                stop_reason = "time budget"
                break
            lr = self._lr()
            for g in self.opt.param_groups:
                g["lr"] = lr
            loss, extra = self._loss()
            if not torch.isfinite(loss):
                raise PreconditionError(f"loss became {loss.item()} at step {self.step}; lower --lr")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1
            self.samples_seen += cfg.batch_size
            self.elapsed = time.time() - t_start
            self.cpu_s = time.process_time() - cpu_start
            self.last_loss = loss.item()
            run_loss = self.last_loss if run_loss is None else 0.95 * run_loss + 0.05 * self.last_loss
            bar.update(self.step, self.elapsed)
            for cb in self.callbacks:
                cb(self)
            if self.step % 20 == 0:
                bar.set_postfix(loss=f"{run_loss:.3f}", lr=f"{lr:.4f}", **{k: f"{v:.2f}" for k, v in extra.items()})
                self._append_log({"event": "train", "step": self.step, "loss": run_loss, "lr": lr,
                                  "elapsed_s": round(self.elapsed, 1), "cpu_s": round(self.cpu_s, 1), "epoch": self.epoch,
                                  **extra})
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self.save_checkpoint()
                if self.dev is not None and self._log_eval():
                    stop_reason = "early stopping"
                    break
        bar.close()
        for cb in self.callbacks:
            if hasattr(cb, "close"):
                cb.close(self)
        final = self.evaluate_dev()
        self.save_checkpoint(final_metrics=final)
        if final is not None:
            self._consider_best(final)
        summary = {"event": "done", "stop_reason": stop_reason, "step": self.step, "samples_seen": self.samples_seen,
                   "images_seen": self.images_seen, "elapsed_s": round(self.elapsed, 1),
                   "cpu_s": round(self.cpu_s, 1), "dev": final,
                   "best_dev_accuracy": self.best}
        self._append_log(summary)
        return summary

    def _log_eval(self) -> bool:
        rep = self.evaluate_dev()
        self._append_log({"event": "eval", "step": self.step, "samples_seen": self.samples_seen,
                          "elapsed_s": round(self.elapsed, 1), **rep})
        self.history.append({"step": self.step, "accuracy": rep["accuracy"], "auc": rep["auc"]})
        improved = self._consider_best(rep)
        if improved:
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        return bool(self.cfg.patience and self.bad_evals >= self.cfg.patience)

    def _consider_best(self, rep: dict) -> bool:
        if self.best is None or rep["accuracy"] > self.best:
            self.best = rep["accuracy"]
            if self.step > 0:
                self._save_embedder(self.out / "best", rep)
            return True
        return False

    def _append_log(self, rec: dict) -> None:
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    # ------------------------------------------------------------------------------------------ saving
    def model_card(self, metrics: dict | None) -> dict:
        cfg = self.cfg
        return {
            "kind": "embedder",
            "name": f"{cfg.network}-{cfg.method}",
            "version": f"s{self.samples_seen}",
            "iznet_version": __version__,
            "architecture": self.model.arch,
            "method": {"name": cfg.method, "alpha": cfg.alpha, "mining": cfg.mining, "pair_distance": cfg.pair_distance,
                       "margin_kind": cfg.margin_kind, "margin": getattr(self.head, "margin", cfg.margin),
                       "scale": cfg.scale},
            "preprocess": self.pp.to_dict() | {"flip_tta": cfg.eval_flip},
            **({"chip": str(self.chip)} if self.chip is not None else {}),
            **({"teacher": self.teacher_info} if cfg.method == "distill" else {}),
            "dataset": {**{k: v for k, v in self.train.info.items() if k != "dataset_config"},
                        "dataset_config": self.train.info.get("dataset_config"),
                        "split": cfg.split, "pairs": cfg.pairs, "excluded_folds": cfg.exclude_folds,
                        "dev_folds": cfg.dev_folds, "dev_pairs": cfg.dev_pairs,
                        "train_people": len(self.train.names), "train_images": len(self.train)},
            "training": {"steps": self.step, "samples_seen": self.samples_seen, "images_seen": self.images_seen,
                         "epochs": self.epoch, "elapsed_s": round(self.elapsed, 1), "cpu_s": round(self.cpu_s, 1),
                         "threads": cfg.threads, "device": str(self.device),
                         "seed": cfg.seed, "optimizer": cfg.optimizer, "lr": cfg.lr, "momentum": cfg.momentum,
                         "batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay, "schedule": cfg.schedule},
            "metrics": {"dev": metrics, "dev_history": self.history},
            "config": asdict(cfg),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch": torch.__version__,
        }

    def _save_embedder(self, out: Path, metrics: dict | None) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "model.pt.tmp"
        torch.save({k: v.cpu() for k, v in self.model.state_dict().items()}, tmp)
        tmp.replace(out / "model.pt")
        card = self.model_card(metrics)
        card["weights_sha256"] = sha256_file(out / "model.pt")
        (out / "model.json.tmp").write_text(json.dumps(card, indent=2))
        (out / "model.json.tmp").replace(out / "model.json")
        return out

    def save_checkpoint(self, final_metrics: dict | None = None) -> Path:
        state = {
            "config": asdict(self.cfg), "model": self.model.state_dict(), "head": self.head.state_dict(),
            "optimizer": self.opt.state_dict(), "step": self.step, "samples_seen": self.samples_seen,
            "images_seen": self.images_seen, "elapsed": self.elapsed, "cpu_s": self.cpu_s, "epoch": self.epoch,
            "order": torch.from_numpy(self.order.copy()), "cursor": self.cursor,
            "rng": json.dumps(self.rng.bit_generator.state),
            "sampler_rng": json.dumps(self.sampler.rng.bit_generator.state) if self.sampler else "",
            "torch_rng": torch.get_rng_state(), "gen": self.gen.get_state(),
            "best": self.best if self.best is not None else -1.0, "bad_evals": self.bad_evals,
            "history": json.dumps(self.history),
        }
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / "checkpoint.pt")
        self._save_embedder(self.out, final_metrics)
        return self.out / "checkpoint.pt"

    def _resume(self, path: Path) -> None:
        if path.is_dir():
            path = path / "checkpoint.pt"
        if not path.is_file():
            raise UserInputError(f"no checkpoint to resume from at {path}")
        st = torch.load(path, weights_only=True, map_location=self.device)
        for key in ("network", "method", "input_size", "width", "embedding_dim"):
            if st["config"].get(key) != getattr(self.cfg, key) and key != "input_size":
                raise PreconditionError(f"checkpoint was trained with {key}={st['config'].get(key)!r}, "
                                        f"not {getattr(self.cfg, key)!r}")
        self.model.load_state_dict(st["model"])
        self.head.load_state_dict(st["head"])
        self.opt.load_state_dict(st["optimizer"])
        self.step, self.samples_seen, self.images_seen = st["step"], st["samples_seen"], st["images_seen"]
        self.elapsed, self.epoch, self.cursor = st["elapsed"], st["epoch"], st["cursor"]
        self.cpu_s = float(st.get("cpu_s", 0.0))
        self.order = st["order"].cpu().numpy()
        self.rng.bit_generator.state = json.loads(st["rng"])
        if self.sampler and st["sampler_rng"]:
            self.sampler.rng.bit_generator.state = json.loads(st["sampler_rng"])
        torch.set_rng_state(st["torch_rng"].cpu())
        self.gen.set_state(st["gen"].cpu())
        self.best = None if st["best"] < 0 else st["best"]
        self.bad_evals = st["bad_evals"]
        self.history = json.loads(st["history"])


def train(cfg: TrainConfig, resume: str | Path | None = None) -> dict:
    return Trainer(cfg, resume).fit()


def config_from_file(path: str | Path, **overrides) -> TrainConfig:
    """A JSON experiment config (see ``training/configs/``) with overrides on top. ``{shared_data}`` in a
    string value stands for the shared data folder (``$IZNET_SHARED_DATA`` or ``../shared/data``)."""
    d = json.loads(Path(path).read_text())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - names
    if unknown:
        raise UserInputError(f"{path}: unknown config keys {sorted(unknown)}")
    from iznet.config import shared_data_dir

    for k, v in d.items():
        if isinstance(v, str) and "{shared_data}" in v:
            d[k] = v.replace("{shared_data}", str(shared_data_dir()))
    d.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**d)
