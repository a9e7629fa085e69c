"""The search configuration (one dataclass; the ``amc search`` options derive from it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class SearchConfig:
    """Everything that shapes an AMC search.

    Attributes:
        model: Registry name of the model to compress.
        checkpoint: Checkpoint of the dense model.
        data: Dataset: digits, cifar10 or imagefolder:PATH.
        data_dir: Folder holding the data (default $AMC_DATA_DIR).
        val_size: Training images held out as val (default: dataset's own).
        val_limit: Score episodes on the first N val images only (None: all of val).
        split_seed: Seed of the val draw.
        units: Unit mode: all or internal (AMC's residual-net mode).
        criterion: Channel importance: l1, l2, bn_scale or taylor.
        round_to: Keep channel counts at multiples of this.
        budget: Resource budget, e.g. flops:0.5, params:0.4, latency:0.6.
        reward: Reward: err, flops, params, acc_size or latency.
        lambda_size: The λ of the acc_size reward.
        max_ratio: Largest pruning ratio per unit.
        bn_recalib: Re-estimate BatchNorm statistics after pruning in every episode.
        reconstruct: Refit pruned convs by least squares in every episode.
        calib_size: Training images used for recalibration and reconstruction.
        episodes: Episodes to run in all (warm-up included).
        warmup_episodes: Episodes of uniformly random actions before learning starts.
        noise_sigma: Initial σ of the truncated-normal exploration noise (in [0, 1] units).
        noise_decay: σ is multiplied by this every episode after the warm-up.
        hidden: Width of the two hidden layers of actor and critic.
        lr_actor: Actor learning rate.
        lr_critic: Critic learning rate.
        tau: Soft target-update coefficient.
        batch_size: DDPG mini-batch size.
        gamma: Discount (1: the critic predicts the episode's final reward).
        episode_returns: Train the critic on n-step returns spanning the whole episode
            (n = units): every transition's target is the episode's final reward, as in AMC,
            instead of bootstrapping it back one unit at a time.
        buffer_episodes: Replay buffer size in episodes (x units transitions).
        baseline_alpha: Moving-average factor of the reward baseline.
        seed: The one seed (worker i gets seed + i).
        workers: Parallel env workers (0 or 1: in-process, no Ray).
        address: Ray cluster address (auto or ray://HOST:PORT; None: local Ray).
        threads: torch threads per worker/process.
        cpus_per_worker: CPUs Ray reserves for each env worker.
        gpus_per_worker: GPUs Ray reserves for each env worker.
        max_restarts: Restarts Ray allows each env worker (fault tolerance).
        checkpoint_every: Save agent, replay buffer and counters every N episodes.
        out: Run directory.
        verbose: Show Ray's and SB3's own output.
    """

    model: str = "digits_cnn"
    checkpoint: str | None = None
    data: str = "digits"
    data_dir: str | None = None
    val_size: int | None = None
    val_limit: int | None = None
    split_seed: int = 0
    units: str = "all"
    criterion: str = "l1"
    round_to: int | None = None
    budget: str = "flops:0.5"
    reward: str = "err"
    lambda_size: float = 1.0
    max_ratio: float = 0.8
    bn_recalib: bool = False
    reconstruct: bool = False
    calib_size: int = 512
    episodes: int = 400
    warmup_episodes: int = 100
    noise_sigma: float = 0.5
    noise_decay: float = 0.95
    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    batch_size: int = 64
    gamma: float = 1.0
    episode_returns: bool = True
    buffer_episodes: int = 100
    baseline_alpha: float = 0.95
    seed: int = 0
    workers: int = 0
    address: str | None = None
    threads: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_restarts: int = 3
    checkpoint_every: int = 10
    out: str = "runs/search"
    verbose: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def scorer_kwargs(self) -> dict:
        """Keyword arguments of :func:`amc.prune.scoring.build_scorer`."""
        return {"model": self.model, "checkpoint": self.checkpoint, "data": self.data,
                "data_dir": self.data_dir, "val_size": self.val_size,
                "split_seed": self.split_seed, "val_limit": self.val_limit,
                "units": self.units, "criterion": self.criterion, "round_to": self.round_to,
                "bn_recalib": self.bn_recalib, "reconstruct": self.reconstruct,
                "calib_size": self.calib_size, "seed": self.seed}

    def env_kwargs(self) -> dict:
        return {"budget": self.budget, "reward": self.reward, "max_ratio": self.max_ratio,
                "lambda_size": self.lambda_size}
