"""The shared configuration blocks that the command configs are composed of.

Each block declares and documents its fields once; a command config inherits the blocks it
needs (``@dataclass(kw_only=True)``, so fields keep their block's defaults whatever the
order), and ``amc <command> --help`` shows the block's text for each of them.

* :class:`ArchConfig`, :class:`ModelConfig`: which network (from which checkpoint);
* :class:`DataConfig`: which dataset, where, and how ``val`` is drawn;
* :class:`PruneConfig`: the prunable units, how channels are ranked, where latency is measured;
* :class:`RepairConfig`: how a pruned network is repaired and scored before fine-tuning;
* :class:`OptimConfig`: the training recipe (optimiser, schedule, distillation, device);
* :class:`RunConfig`: the one seed and the thread count;
* :class:`ClusterConfig`: Ray workers, the cluster and what each worker reserves;
* :class:`OutputConfig`: where results go, and whether existing ones may be replaced.

A command config may give an inherited field another default by declaring it again without
a docstring entry (e.g. ``out: str = "runs/search"``); its text stays the block's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

MAX_RATIO = 0.8
"""The largest channel-pruning ratio of one unit (AMC's 0.8): the default of every command,
config and function that takes ``max_ratio``."""

RECAL_ON = ("calib", "val")
"""Where a score's BatchNorm statistics may come from (``RepairConfig.recal_on``,
``amc.prune.scoring.Scorer.recal_on``)."""

RECORDED = {"cli": False}
"""Metadata of a field that a run records but no option sets (derived from the others)."""

NOISE_MIN = 0.05
"""Floor of AMC's decaying exploration σ (action units): the default of ``amc search`` and
``amc compare`` (the paper's schedule is 0; the floor gained 0.9-4.5 test points in each of
the 9 searches of ``results/compare_resnet56``)."""


@dataclass(kw_only=True)
class ArchConfig:
    """The architecture.

    Attributes:
        model: Registry name (see `amc models`), tv:<torchvision name> or
            package.module:factory.
        num_classes: Override the model's class count.
        unsafe_load: Allow pickled objects in checkpoints (runs the file's code: only for
            files you trust).
    """

    model: str | None = "digits_cnn"
    num_classes: int | None = None
    unsafe_load: bool = False


@dataclass(kw_only=True)
class ModelConfig(ArchConfig):
    """The network and its weights.

    Attributes:
        checkpoint: Checkpoint of the model (a state dict or a model saved by amc).
    """

    checkpoint: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(kw_only=True)
class DataConfig:
    """The dataset.

    Attributes:
        data: Dataset: digits, cifar10 or imagefolder:PATH.
        data_dir: Folder holding the data (default $AMC_DATA_DIR).
        val_size: Training images held out as val (default: the dataset's own).
        split_seed: Seed of the val draw (and of fine-tuning's train_limit subset).
        download: Let torchvision download CIFAR-10 when it is not found locally.
        input_size: C H W that the images of an image folder are cropped to (default: the
            model's own input size; digits and CIFAR-10 keep their own size).
        loader_workers: DataLoader worker processes that read an image folder (default:
            half the CPUs, 1 to 8; 0: read in the training process).
    """

    data: str = "digits"
    data_dir: str | None = None
    val_size: int | None = None
    split_seed: int = 0
    download: bool = False
    input_size: tuple[int, ...] | None = None
    loader_workers: int | None = None

    def dataset_kwargs(self, model: str | None = None) -> dict:
        """Keyword arguments of :func:`amc.data.load_dataset` (besides the name); ``model``:
        the network whose input size an image folder is cropped to by default."""
        from amc.models.registry import input_size_of

        size = input_size_of(model, self.input_size)
        return {"data_dir": self.data_dir, "val_size": self.val_size, "seed": self.split_seed,
                "download": self.download, "input_size": size,
                "loader_workers": self.loader_workers}


@dataclass(kw_only=True)
class PruneConfig:
    """The prunable units, and where latency is measured.

    Attributes:
        units: Unit mode: auto, all or internal (AMC's residual-net mode: only channels that
            meet no residual add); auto chooses internal for a network with residual adds,
            else all, and says which.
        criterion: Channel importance: l1, l2, bn_scale or taylor.
        round_to: Keep channel counts at multiples of this (None: any count).
        fill_vectors: At a latency budget measured with CPU vectors (PyTorch on AVX2 or
            AVX-512), round a unit's kept channels past one vector up to whole vectors while
            the budget holds: its convs compute and read those a vector at a time, so the
            latency table charges them whole already, and the filled channels are accuracy
            for only their BatchNorm's time (AMC in each episode, the other strategies on
            their final policy).
        max_ratio: Largest channel-pruning ratio of any unit.
        drop_blocks: Let a unit that is a basic residual block's inner width also be dropped
            whole (ratio 1: the block becomes its shortcut plus a constant, exactly): a
            dropped block takes its whole time with it, where a pruned width is paid in whole
            CPU vectors (results/block_drop.md).
        latency_backend: Where latency budgets and rewards are measured: torch (PyTorch CPU
            eager) or ort (ONNX Runtime CPU, the exported model).
        latency_batch: Batch size latency is measured at (64: a served batch, where pruned
            channels pay off; 1: single-request latency).
        latency_threads: Intra-op threads of the latency backend (as deployed).
        latency_table_method: Recorded, not an option: how the latency lookup table is
            measured and counted (:data:`amc.prune.latency_table.METHOD`) when a latency
            budget or reward is used, None otherwise (the commands' configs set it with
            :func:`amc.prune.latency_table.method_for`), so that a run cached with an older
            table is not reused as if made with this one.
    """

    units: str = "auto"
    criterion: str = "l1"
    round_to: int | None = None
    fill_vectors: bool = True
    max_ratio: float = MAX_RATIO
    drop_blocks: bool = False
    latency_backend: str = "torch"
    latency_batch: int = 64
    latency_threads: int = 2
    latency_table_method: int | None = field(default=None, metadata=RECORDED)


@dataclass(kw_only=True)
class RepairConfig:
    """Repair and scoring of a pruned network before any fine-tuning.

    Attributes:
        bn_recalib: Re-estimate BatchNorm statistics on training images after pruning.
        reconstruct: Refit the convs after each pruned unit by least squares on the first
            256 calibration images, in the BatchNorm recalibration's own forward pass (on by
            default: on ResNet-56, 2.9-8.8 test points more before fine-tuning for every
            strategy at 50 % FLOPs and 10.0-17.6 at 30 %, ~0.1 s per episode;
            results/quality_resnet56_amx_fused.md vs _amx_cap90.md,
            results/bench_reconstruct.json). --no-reconstruct: prune and recalibrate only.
        calib_size: Training images drawn for calibration (reconstruction uses the first
            256, taylor ranking all of them).
        recal_size: Of those, the images BatchNorm statistics are re-estimated on (one
            batch; results/bench_episode.json measures how few keep the ranking).
        val_limit: Score on the first N val images only (None: all of val).
        race: In searches (amc search, and the AMC strategy of amc compare), stop scoring a
            policy once, with 99 % confidence, it cannot beat the best one so far
            (amc.prune.racing); the best policy is always scored on all of val. Baselines
            score every policy on all the val images they score on (--val-limit).
        fast_eval: Score with BatchNorm folded into the convs and channels-last tensors
            (False: the plain path, kept as the reference).
        score_amp: Mixed precision of the scores (recalibration and evaluation of each
            policy; the networks delivered and all test figures stay fp32): auto (bf16 on
            GPUs and on CPUs with native bf16, 1.6x faster ResNet-56 episodes ranked as fp32
            ranks them, results/bench_episode.json; else fp32), bf16, fp16 or off.
        recal_on: Where each score's BatchNorm statistics come from: calib (the first
            recal_size calibration images) or val (the first recal_size val images, which
            that one train-mode pass also scores, one forward fewer per episode; with the
            reconstruction its fits run on those images in the same pass, ~7 % faster but
            searches delivered -0.5 test points on ResNet-56, not recommended; label-free,
            and the delivered networks are still repaired on calibration images).
    """

    bn_recalib: bool = True
    reconstruct: bool = True
    calib_size: int = 512
    recal_size: int = 256
    val_limit: int | None = None
    race: bool = True
    fast_eval: bool = True
    score_amp: str = "auto"
    recal_on: str = "calib"


@dataclass(kw_only=True)
class OptimConfig:
    """The training recipe shared by training, fine-tuning and the comparison's fine-tunes.

    Attributes:
        batch_size: Mini-batch size.
        lr: Peak learning rate (cosine schedule).
        momentum: SGD momentum (Nesterov).
        weight_decay: L2 weight decay.
        warmup_epochs: Linear warm-up epochs of the cosine schedule (may be fractional).
        label_smoothing: Label-smoothing factor.
        kd_weight: Weight of distillation from the dense model (0: off).
        kd_temperature: Distillation temperature.
        augment: Random crop and flip (None: on for natural images).
        amp: Mixed precision: auto (bf16 on CUDA where supported, else fp16 with a gradient
            scaler; off on the CPU), bf16, fp16 or off.
        channels_last: Train with channels-last tensors (faster convolutions on GPUs).
        compile: Compile the network with torch.compile before training (each stage).
    """

    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    kd_weight: float = 0.0
    kd_temperature: float = 4.0
    augment: bool | None = None
    amp: str = "auto"
    channels_last: bool = False
    compile: bool = False

    def optim_fields(self) -> dict:
        """The values of this block's fields (to build a :class:`TrainConfig` from)."""
        return {f.name: getattr(self, f.name) for f in fields(OptimConfig)}


@dataclass(kw_only=True)
class PrunedOptimConfig(OptimConfig):
    """The recipe of the fine-tunes that recover pruned networks (``amc finetune``, ``amc
    compare``): :class:`OptimConfig` with distillation on.

    Attributes:
        kd_weight: Weight of distillation from the dense model in the fine-tunes of pruned
            networks (0: off; a dense fine-tune has no teacher). 0.5 by default: on CIFAR
            ResNet-56 pruned to 1.8x / half the MACs it scored 1.7-1.9 points higher than
            fine-tuning without it for about as long, and 2.2 higher at equal images
            (results/compare_resnet56_drop55_swap/drop55_kd_time.md).
    """

    kd_weight: float = 0.5


@dataclass(kw_only=True)
class RunConfig:
    """Seed and threads.

    Attributes:
        seed: The one seed: calibration draw, initialisation, shuffling, random policies and
            the agent (Ray worker i gets seed + i).
        threads: torch CPU threads of this process (of each Ray worker where there are
            workers); 0 or None: torch's default.
        device: auto (CUDA when present), cpu or cuda: where pruned networks are scored and
            networks are trained (mixed precision on CUDA).
    """

    seed: int = 0
    threads: int | None = None
    device: str = "auto"


@dataclass(kw_only=True)
class ClusterConfig:
    """Parallel workers on Ray.

    Attributes:
        workers: Ray workers: env workers of a search, data-parallel training workers of a
            fine-tune (0 or 1: in-process, no Ray).
        address: Ray cluster address (auto or ray://HOST:PORT; None: a local Ray bound to
            127.0.0.1).
        cpus_per_worker: CPUs Ray reserves for each worker.
        gpus_per_worker: GPUs Ray reserves for each worker.
    """

    workers: int = 0
    address: str | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass(kw_only=True)
class OutputConfig:
    """Where the results go.

    Attributes:
        out: Output file or run directory.
        force: Overwrite outputs that already exist (amc never does so otherwise).
    """

    out: str
    force: bool = False


@dataclass(kw_only=True)
class ScoringConfig(ModelConfig, DataConfig, PruneConfig, RepairConfig, RunConfig):
    """Model, data, units, repair and seed: what :func:`amc.prune.scoring.build_scorer` needs."""

    def scoring_fields(self) -> dict:
        """The values of this block's fields (to build another command's config from)."""
        return {f.name: getattr(self, f.name) for f in fields(ScoringConfig)}

    def scored_by(self) -> dict:
        """What a score this config's scorer gives depends on: its fields but those that
        change only how fast it runs (``threads``, ``loader_workers``, ``download``) or how an
        episode may stop early (``race``), JSON-normalised. Scores made elsewhere (the
        ``blocks`` candidates ``amc compare`` hands to its AMC search) are reused only when
        this is equal (one image's top-1 may still differ across thread counts)."""
        free = ("threads", "loader_workers", "download", "race")
        return json.loads(json.dumps({k: v for k, v in self.scoring_fields().items()
                                      if k not in free}))

    def scorer_kwargs(self) -> dict:
        """Keyword arguments of :func:`amc.prune.scoring.build_scorer`."""
        return {"model": self.model, "checkpoint": self.checkpoint, "data": self.data,
                "data_dir": self.data_dir, "val_size": self.val_size,
                "split_seed": self.split_seed, "val_limit": self.val_limit,
                "units": self.units, "criterion": self.criterion, "round_to": self.round_to,
                "drop_blocks": self.drop_blocks,
                "bn_recalib": self.bn_recalib, "reconstruct": self.reconstruct,
                "calib_size": self.calib_size, "seed": self.seed,
                "unsafe_load": self.unsafe_load, "num_classes": self.num_classes,
                "recal_size": self.recal_size, "device": self.device,
                "fast_eval": self.fast_eval, "input_size": self.input_size,
                "loader_workers": self.loader_workers, "amp": self.score_amp,
                "recal_on": self.recal_on}
