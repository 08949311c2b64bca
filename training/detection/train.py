"""The detector trainer: one readable loop.

1. Labelled photos: pseudo-labels from a teacher on LFW and the group photos (cached JSON, see
   :mod:`training.detection.pseudo_labels`), plus the dlib PASCAL training boxes.
2. Anchors: k-means (1 - IoU) over the boxes of a few hundred training samples, as drawn by the sampler.
3. Train: AdamW, warm-up then cosine decay over the step budget (or the time budget, whichever ends first),
   an exponential moving average of the weights (the EMA is what gets saved), a checkpoint every few minutes
   so a cut run still leaves a usable detector, and a resumable state beside it (``<out>.state.pt``: model,
   EMA, optimiser, step, time spent): a run started again with the same ``out`` and ``resume`` continues
   from that step, its schedule and time budget where they were.

``device``: ``auto`` trains on a GPU when torch sees one (bf16 autocast there), else on the CPU.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from iznet.detection.anchors import kmeans_anchors, mean_best_iou
from iznet.detection.darknet import STRIDES, build_model, count_parameters, model_config
from iznet.detection.yolo import save_detector, to_tensor
from training.detection.data import (
    LabelledImage,
    SampleSource,
    list_backgrounds,
    photos_from_imglab,
    photos_from_pseudo_labels,
)
from training.detection.targets import YoloLoss
from training.progress import BudgetBar


@dataclass
class TrainConfig:
    out: Path
    size: str = "cpu"
    img_size: int = 256
    batch: int = 16
    steps: int = 3000
    minutes: float = 0.0  # 0 = no time budget
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: int = 100
    num_anchors: int = 3
    ema_decay: float = 0.99
    seed: int = 0
    threads: int = 1
    workers: int = 0
    checkpoint_minutes: float = 5.0
    log_every: int = 20
    gray_p: float = 0.5
    mix: tuple[float, float, float] = (0.4, 0.4, 0.2)
    # the inference size written into the card: the study's 416. Trained on 160-px samples, the detector fires on
    # texture when large scans are shown at 640 (CMU+MIT head AP 0.528 at 640, 0.618 at 416: docs/detection.md)
    input_size: int = 416
    name: str = ""
    sources: dict = field(default_factory=dict)
    init: str = ""  # a saved detector (.pt with its card) to continue from: its weights and anchors
    resume: bool = True  # continue from <out>.state.pt when it is there (a killed job picks up its run)
    landmarks: int = -1  # landmark head: 5 points, or 0 for none; -1: 5 when the labels have landmarks
    landmark_weight: float = 0.1
    device: str = "auto"  # auto | cpu | cuda


class _Batches(torch.utils.data.IterableDataset):
    """Endless batches from a SampleSource; each worker has its own seed."""

    def __init__(self, source: SampleSource, batch: int, seed: int):
        self.source, self.batch, self.seed = source, batch, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        cv2.setNumThreads(1)
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            ims, boxes = zip(*(self.source.sample(rng) for _ in range(self.batch)))
            yield to_tensor(list(ims)), [torch.from_numpy(b) for b in boxes]


def collect_photos(sources: dict, min_score: float = 0.7) -> list[LabelledImage]:
    """The labelled photos of ``sources``; a pseudo source may hold out people (``exclude_people_of``: an LFW
    pairs file and its folds, e.g. fold 5, whose people the recognition figures are measured on)."""
    photos: list[LabelledImage] = []
    for item in sources.get("pseudo", []):
        found = photos_from_pseudo_labels(Path(item["labels"]), Path(item["root"]), min_score=min_score)
        if item.get("exclude_people_of"):
            from training.data import load_pairs

            held = load_pairs(item["exclude_people_of"]["pairs"]).people(set(item["exclude_people_of"]["folds"]))
            found = [p for p in found if p.path.parent.name not in held]
        photos += found
    for xml in sources.get("imglab", []):
        photos += photos_from_imglab(Path(xml))
    for p in photos:
        if "cmu_mit" in str(p.path):
            raise ValueError(f"{p.path}: CMU+MIT is the evaluation set and must not be trained on")
    return photos


def fit_anchors(source: SampleSource, k: int, n_samples: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, 12345])
    wh = []
    for _ in range(n_samples):
        _, b = source.sample(rng)
        wh.append(b[:, 2:4] - b[:, :2])
    wh = np.concatenate(wh)
    anchors = kmeans_anchors(wh, k=k, seed=seed)
    return anchors, wh


def state_path(out: Path) -> Path:
    """Where a run keeps what it needs to continue (beside the saved detector)."""
    return Path(out).with_suffix(".state.pt")


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    from training.trainer import resolve_device

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    cv2.setNumThreads(1)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".log.jsonl")
    state = None
    if cfg.resume and state_path(out).is_file():
        state = torch.load(state_path(out), map_location="cpu", weights_only=True)
        if state["size"] != cfg.size or state["num_anchors"] != cfg.num_anchors:
            raise ValueError(f"{state_path(out)} is a {state['size']} run with {state['num_anchors']} anchors; "
                             f"remove it or choose another --out")

    photos = collect_photos(cfg.sources)
    backgrounds = list_backgrounds(Path(cfg.sources["backgrounds"])) if cfg.sources.get("backgrounds") else []
    source = SampleSource(photos, backgrounds, size=cfg.img_size, mix=cfg.mix, gray_p=cfg.gray_p)

    k = 3 * cfg.num_anchors
    anchors, wh = fit_anchors(source, k, seed=cfg.seed)
    num_landmarks = cfg.landmarks if cfg.landmarks >= 0 else (5 if any(p.has_landmarks for p in photos) else 0)
    if num_landmarks not in (0, 5):
        raise ValueError(f"landmarks: 0 or 5, not {num_landmarks}")
    model = build_model(cfg.size, num_anchors=cfg.num_anchors, num_landmarks=num_landmarks)
    if cfg.init:  # continue a saved run: same architecture, its weights and its anchors
        init_card = json.loads(Path(cfg.init).with_suffix(".json").read_text())
        if init_card["size"] != cfg.size or init_card["num_anchors"] != cfg.num_anchors:
            raise ValueError(f"--init {cfg.init} is a {init_card['size']} model with {init_card['num_anchors']} anchors")
        init_state = torch.load(Path(cfg.init).with_suffix(".pt"), map_location="cpu", weights_only=True)
        new_head = init_card.get("num_landmarks", 0) != num_landmarks  # e.g. a box-only model gains landmarks:
        if new_head:  # its last convs start fresh
            init_state = {k: v for k, v in init_state.items() if not (k.startswith("heads.") and k.split(".")[2] == "1")}
        model.load_state_dict(init_state, strict=not new_head)
        anchors = np.asarray(init_card["anchors"], np.float32).reshape(-1, 2)
    if state is not None:  # a resumed run keeps its own anchors, not the ones fitted again above
        anchors = state["anchors"].numpy().reshape(-1, 2)
        model.load_state_dict(state["model"])
    anchors_t = torch.from_numpy(anchors).view(3, cfg.num_anchors, 2)

    model = model.to(device, memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    if state is not None:
        ema.load_state_dict(state["ema"])
    criterion = YoloLoss(anchors_t.to(device), landmark_weight=cfg.landmark_weight)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    step, spent = 0, 0.0  # steps done and seconds trained before this process (a resumed run)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step, spent = int(state["step"]), float(state["elapsed"])
    loader = torch.utils.data.DataLoader(
        _Batches(source, cfg.batch, cfg.seed + 1_000_003 * step),  # a resumed run draws new samples
        batch_size=None,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=2 if cfg.workers > 0 else None,
    )

    card_base = {
        "name": cfg.name or f"iznet-yolo-{cfg.size}",
        "size": cfg.size,
        "architecture": model_config(cfg.size),
        "num_anchors": cfg.num_anchors,
        "num_landmarks": num_landmarks,
        "landmarks": "left eye, right eye, nose, left and right mouth corner (as MTCNN)" if num_landmarks else "",
        "strides": list(STRIDES),
        "anchors": anchors_t.tolist(),
        "anchor_fit_mean_iou": round(mean_best_iou(wh, anchors), 4),
        "input_size": cfg.input_size,
        "conf_threshold": 0.3,
        "iou_threshold": 0.4,
        "parameters": count_parameters(model),
        "train": {
            **{k_: (str(v) if isinstance(v, Path) else v) for k_, v in asdict(cfg).items()},
            "num_photos": len(photos),
            "num_backgrounds": len(backgrounds),
            "machine": platform.platform(),
            "device": str(device),
            "torch": torch.__version__,
        },
    }

    def save(step: int, elapsed: float, final: bool) -> Path:
        card = copy.deepcopy(card_base)
        card["train"].update({"steps_done": step, "train_minutes": round(elapsed / 60, 2), "finished": final,
                              **({"resumed_at_steps": resumed} if resumed else {})})
        saved = save_detector(copy.deepcopy(ema).cpu(), card, out)
        tmp = state_path(out).with_suffix(".tmp")
        torch.save({"size": cfg.size, "num_anchors": cfg.num_anchors, "anchors": torch.from_numpy(anchors),
                    "model": {k: v.cpu() for k, v in model.state_dict().items()},
                    "ema": {k: v.cpu() for k, v in ema.state_dict().items()}, "optimizer": opt.state_dict(),
                    "step": step, "elapsed": elapsed, "resumed": resumed}, tmp)
        tmp.replace(state_path(out))
        return saved

    resumed = list(state.get("resumed", [])) + [step] if state is not None else []
    t0 = time.time() - spent
    last_ckpt = time.time()
    it = iter(loader)
    bar = BudgetBar(cfg.steps, cfg.minutes or None, step, spent, "train detector", disable=not progress)
    run_loss = None
    with log_path.open("a" if state is not None else "w") as log:
        while step < cfg.steps:
            elapsed = time.time() - t0
            frac = step / cfg.steps
            if cfg.minutes > 0:
                frac = max(frac, elapsed / (cfg.minutes * 60))
            if frac >= 1.0:
                break
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = lr
            x, boxes = next(it)
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            model.train()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                pred = model(x)
            loss, parts = criterion([p.float() for p in pred], boxes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.state_dict().values(), model.state_dict().values()):
                    if pe.dtype.is_floating_point:
                        pe.mul_(d).add_(pm.detach(), alpha=1 - d)
                    else:
                        pe.copy_(pm)
            step += 1
            run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
            bar.update(step, time.time() - t0)
            bar.set_postfix(loss=f"{run_loss:.3f}", lr=f"{lr:.1e}")
            if step % cfg.log_every == 0 or step == 1:
                log.write(json.dumps({"step": step, "t": round(time.time() - t0, 1), "loss": round(float(loss), 4),
                                      "avg": round(run_loss, 4), "lr": lr, **parts}) + "\n")
                log.flush()
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                save(step, time.time() - t0, final=False)
                last_ckpt = time.time()
    bar.close()
    return save(step, time.time() - t0, final=True)


def default_sources(shared: Path, labels_dir: Path, teacher: str = "mtcnn") -> dict:
    """Training sources under the shared data folder and where their pseudo-labels are cached
    (``pseudo_<set>_<teacher>.json``: MTCNN's carry the five landmarks the landmark head learns). LFW's
    fold-5 people are held out (the recognition figures are theirs); ``groups/`` is not trained on: its
    pseudo-labels are the held-out set the inference size is chosen on (CMU+MIT stays the test)."""
    return {
        "pseudo": [
            {"root": str(shared / "lfw"), "labels": str(labels_dir / f"pseudo_lfw_{teacher}.json"),
             "exclude_people_of": {"pairs": str(shared / "lfw" / "pairs_folds1-5.txt"), "folds": [5]}},
        ],
        "imglab": [str(shared / "detection" / "dlib_pascal_faces" / "training.xml")],
        "backgrounds": str(shared / "detection" / "nonface_scenes"),
    }
