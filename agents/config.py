"""The search configuration (one dataclass; the ``amc search`` options derive from it)."""

from __future__ import annotations

from dataclasses import dataclass

from amc.config.blocks import NOISE_MIN, ClusterConfig, OutputConfig, ScoringConfig


@dataclass(kw_only=True)
class SearchConfig(ScoringConfig, ClusterConfig, OutputConfig):
    """Everything that shapes an AMC search (model, data, units and repair: the blocks of
    :class:`~amc.config.blocks.ScoringConfig`; the env workers: the
    :class:`~amc.config.blocks.ClusterConfig` block; the agent and run below).

    Attributes:
        budget: Resource budget, e.g. flops:0.5, params:0.4, latency:0.6.
        reward: Reward: err, flops, params, acc_size, latency or capacity (val top-1 plus
            the MACs kept: at a latency or params budget, meant to favour the network
            fine-tuning recovers further among those that score alike). Measured on five
            ResNet-56 searches at latency:0.53 (results/search_capacity_amx53.md): weight 1
            picked 0.434 ± 0.035 of the MACs against err's 0.441 ± 0.030 (the blocks a
            search drops come from its warm start); weight 2 with the search's own blocks
            pick 0.516 ± 0.023, 1.87x against 1.82x, but 0.19 points below err's picks
            after 2 epochs of fine-tuning over 45,000 images (86.71 ± 0.26).
        lambda_size: The λ of the acc_size reward.
        capacity_weight: With the capacity reward: points of val top-1 that 1 % of the dense
            MACs is worth. Measured 0.75 (10 ResNet-56 networks of latency:0.53, AMC's and
            blocks', fine-tuned on 5,000 images: test after it rose 0.22 points per point of
            val before it and 0.17 per 1 % of MACs); the default 1 leans a little further on
            capacity.
        episodes: Episodes to run in all (warm-up included).
        warmup_episodes: Warm-up episodes: demonstrations of the cheap policies (warm start
            cheap) or uniformly random actions (random) before the agent's own.
        warm_start: cheap: the warm-up replays uniform, global (and, with --sensitivity,
            sensitivity; with --drop-blocks, blocks) allocations, exactly and perturbed, and
            the actor starts at the best of them; random: the paper's random warm-up.
        warm_start_sigma: With a cheap warm start: σ of the perturbed demonstrations and the
            initial σ of the exploration noise (in [0, 1] units).
        anchor_every: With a cheap warm start: every this many episodes after the warm-up,
            fit the actor again to the best complete episode so far (self-imitation), so
            exploration stays around the best policy found; 0: only at the warm-up's end.
        anchor_solve: Fit the actor's last layer in closed form first, Adam steps only
            where that leaves it off the policy. Off by default: in five ResNet-56 searches
            at latency:0.52 (--anchor-every 1) it halved the fits' seconds and ran 184
            episodes against 149, but its picks scored 1.35 points lower on val (noise:
            ±2.8), the actor anchored less closely.
        sensitivity: A cached sensitivity sweep (sensitivity.json of amc compare) whose
            allocation joins the warm start's demonstrations.
        blocks_policy: The blocks policy (``amc baseline --strategy blocks``, same model,
            budget and calibration draw) to use among the cheap policies instead of making
            it again (``amc compare`` hands its own over; making one scores up to
            2 x blocks + 1 networks).
        noise_sigma: Initial σ of the truncated-normal exploration noise (in [0, 1] units).
        noise_decay: σ is multiplied by this every episode after the warm-up.
        noise_min: Floor of the decaying σ (in [0, 1] units): with a floor, late episodes
            keep exploring around the re-anchored actor instead of replaying it; 0: AMC's
            schedule, σ decays towards 0.
        drop_swap: With droppable blocks (--drop-blocks): the probability that an episode
            after the warm-up swaps a block the actor dropped in its previous episode with
            one it kept (the noise around the actor's actions alone rarely moves a block
            across the drop threshold); 0: never.
        pair_moves: The probability that an episode after the warm-up (one that swaps no
            blocks) is a pair move: the best policy so far (with a cheap warm start; else
            the actor's previous actions) without noise, except one or two pairs of kept
            units of the same cost (same shapes) where one prunes up to 0.2 (in [0, 1]
            action units) more and the other as much less, so the episode spends the budget
            of the policy it explores around (the noise on every unit shifts it, and the
            budget rule then squeezes the last units); 0: never.
        rescore_top: At the end, score the search's this many best distinct policies again
            on the rest of val (the images past --val-limit, which the search never saw) and
            keep the best on all of val: the highest of hundreds of noisy scores is biased
            upward, so it is often not the best policy (0 or 1: keep the search's best).
        finalists: At the very end, fine-tune this many of the search's best policies
            briefly (distilled from the dense model: --finalist-images training images for
            --finalist-epochs) and keep the one best on all of val after it: no score before
            fine-tuning orders the good policies as fine-tuning does. The finalists are the
            best policy of each distinct set of dropped blocks (with --drop-blocks, the blocks
            strategy's candidates join the search's episodes), then the next best distinct
            ones. Not within --time-limit (unless --time-limit-finalists); its seconds are in the
            summary (0 or 1: off).
        blocks_finalists: With --drop-blocks and a cheap warm start: before the episodes,
            fine-tune this many of the blocks strategy's candidates (one per number of
            dropped blocks), the best by score, as --finalists does, and warm-start from the
            one best on all of val after it instead of the best by score: a search seldom
            leaves the blocks its warm start dropped, and networks of one latency that drop
            more blocks and prune the rest less recover more in fine-tuning. Not within
            --time-limit (unless --time-limit-finalists); its seconds are in the summary (0 or
            1: off).
        finalist_images: Training images of each finalist's fine-tune (a seeded draw; the
            rest of the recipe is amc finetune's default: lr 0.01, batch 128, distillation
            weight 0.5).
        finalist_epochs: Epochs of each finalist's fine-tune.
        finalist_margin_se: --finalists keeps the search's own pick unless another finalist
            leads it on all of val after the fine-tune by more than this many standard
            errors of the difference of two val top-1s (binomial; 1: ~0.7 points on 5,000
            images at 86 %): the finalists lie within a point, inside one fine-tune's
            spread, and a swap on noise costs accuracy before fine-tuning
            (results/compare_resnet56_drop54_margin). 0: the best after it wins.
        time_limit: Wall seconds of this session's search, from its start (the making of
            its cheap policies, the envs and agent, and its rescoring included; None: run all
            --episodes): the episodes stop at the end of a round of episodes once the next
            round (timed as the longest so far, plus a fit of the actor deferred to it) and
            the rescoring (estimated from the episodes' scoring times) would not end within
            it. A search stopped by it is finished: resume it (--resume) to run the remaining
            episodes.
        time_limit_finalists: --time-limit bounds the whole search: also --blocks-finalists'
            fine-tunes (before the episodes), --finalists' (after the rescoring; each
            estimated as long as a blocks finalist's, else from the episodes' scoring times)
            and a latency budget's whole-model check of the pick. The episodes stop earlier to
            leave them room. False: they come on top of it.
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
        overlap_updates: Make the agent's updates for finished episodes while the envs
            score the next ones (the policy then acts one round of episodes behind its
            updates): with Ray workers, and in one process when the scoring leaves a core
            free (on a GPU, or on fewer threads than the machine's cores); False: between
            the rounds.
        envs_on: Where the envs of a search with Ray workers step. driver: on the driver, in
            threads, sending only their last step (the scoring) to the workers: one remote
            call per episode, and the rescoring on the workers too; the driver's share
            (about 1 ms per step per env for a ResNet-56) grows with the workers. workers:
            each env in its own Ray actor: one remote call per step, the steps in parallel
            (for many workers). Both make the same episodes for a seed.
        envs_per_worker: Episodes in flight per Ray worker (with --envs-on driver). With
            more envs than workers the scores queue, so a worker that finishes a short
            (raced) episode takes the next one instead of idling until the round's slowest
            is scored. The agent then acts on a policy one round (workers x this episodes)
            behind, so a seed finds other policies than with 1.
        max_restarts: Restarts Ray allows each env worker (fault tolerance).
        checkpoint_every: Save agent, replay buffer and counters every N episodes.
        out: Run directory.
        force: Start over in a run directory that holds a search (its files are
            replaced), or write into one that holds files amc did not write.
        verbose: Show Ray's and SB3's own output.
    """

    budget: str = "flops:0.5"
    reward: str = "err"
    lambda_size: float = 1.0
    capacity_weight: float = 1.0
    episodes: int = 400
    warmup_episodes: int = 100
    warm_start: str = "cheap"
    warm_start_sigma: float = 0.15
    anchor_every: int = 10
    anchor_solve: bool = False
    sensitivity: str | None = None
    blocks_policy: str | None = None
    noise_sigma: float = 0.5
    noise_decay: float = 0.95
    noise_min: float = NOISE_MIN
    drop_swap: float = 0.0
    pair_moves: float = 0.0
    rescore_top: int = 5
    finalists: int = 0
    blocks_finalists: int = 0
    finalist_images: int = 5000
    finalist_epochs: float = 1.0
    finalist_margin_se: float = 1.0
    time_limit: float | None = None
    time_limit_finalists: bool = False
    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    batch_size: int = 64
    gamma: float = 1.0
    episode_returns: bool = True
    buffer_episodes: int = 100
    baseline_alpha: float = 0.95
    threads: int | None = 1
    overlap_updates: bool = True
    envs_on: str = "driver"
    envs_per_worker: int = 1
    max_restarts: int = 3
    checkpoint_every: int = 10
    out: str = "runs/search"
    verbose: bool = False

    def __post_init__(self) -> None:
        from amc.prune.latency_table import method_for

        self.latency_table_method = method_for([self.budget], self.reward)

    def env_kwargs(self) -> dict:
        from amc.prune.latency_table import LatencySpec

        return {"budget": self.budget, "reward": self.reward, "max_ratio": self.max_ratio,
                "lambda_size": self.lambda_size, "capacity_weight": self.capacity_weight,
                "race": self.race,
                "latency": LatencySpec.from_config(self), "fill_vectors": self.fill_vectors}

    def parsed_budget(self):
        """The budget, measured (when it is a latency budget) as the config says."""
        from amc.prune.budget import Budget
        from amc.prune.latency_table import LatencySpec

        return Budget.parse(self.budget, LatencySpec.from_config(self))
