"""Train the RFM (or a baseline) on rater-identified pairs with the Bradley-Terry objective.

p(y > y' | x, h) = sigmoid(<phi(x, y) - phi(x, y'), w_h>), with w_h = w_0 + delta_h and an L2
penalty on the deviations delta_h (the rater matrix W = w_0 + Delta). A second BT term scores every
pair with w_0 alone (weight `population_loss`), so the shared weights stay a good reward for someone
we know nothing about: a new user's prior mean, which must not lose to the non-adaptive baseline. The head is trained with
weight decay and input dropout; a validation share of every rater's pairs picks the best epoch by
validation log-likelihood (early stopping), because a frozen-encoder head overfits fast.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from rfm.train.config import VAL_SPLITS, TrainConfig
from rfm.train.model import TokenHead
from rfm.train.token_states import TokenStates
from torch import nn

from rfm.data.jsonl import Pair, index_texts
from rfm.errors import UsageError

POPULATION_USER = "__population__"


@dataclass
class PairData:
    """Pairs as indices into a list of distinct (prompt, response) texts."""

    texts: list[tuple[str, str]]
    a: np.ndarray
    b: np.ndarray
    user: np.ndarray
    user_ids: list[str]
    dropped_users: dict[str, int] = field(default_factory=dict)


def index_pairs(pairs: Sequence[Pair], cfg: TrainConfig, source: str = "data") -> PairData:
    """Map pairs to distinct texts and rater rows; validates what the chosen kind needs."""
    if cfg.kind == "rfm":
        missing = sum(p.user_id is None for p in pairs)
        if missing:
            raise UsageError(f"{source}: {missing} pairs have no user_id; an RFM needs rater ids "
                             "(use --baseline for data without them)")
        counts = Counter(p.user_id for p in pairs)
        keep = {u for u, n in counts.items() if n >= cfg.min_pairs}
        dropped = {u: n for u, n in counts.items() if u not in keep}
        if not keep:
            raise UsageError(f"{source}: no user has at least {cfg.min_pairs} pairs (--min-pairs)")
        pairs = [p for p in pairs if p.user_id in keep]
        user_ids = sorted(keep)
    else:
        dropped, user_ids = {}, [POPULATION_USER]
    row = {u: i for i, u in enumerate(user_ids)}
    texts, a, b = index_texts(pairs)
    user = [row[p.user_id] if cfg.kind == "rfm" else 0 for p in pairs]
    return PairData(texts, np.array(a), np.array(b), np.array(user), user_ids, dropped)


def validation_mask(user: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """A seeded per-rater share of pairs held out for validation (none for raters with < 4 pairs)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(user), dtype=bool)
    for u in np.unique(user):
        rows = np.flatnonzero(user == u)
        if len(rows) >= 4 and frac > 0:
            take = max(1, round(frac * len(rows)))
            mask[rng.choice(rows, size=take, replace=False)] = True
    return mask


# `--val-split prompts` needs this many distinct prompts: fewer leave too few held-out prompts to judge by.
MIN_PROMPTS_FOR_PROMPT_SPLIT = 20


def prompt_validation_mask(data: PairData, frac: float, seed: int) -> np.ndarray:
    """Every pair of a seeded `frac` of the distinct prompts: their responses are in no other pair (unless a
    response is repeated word for word under another prompt)."""
    prompt_of = np.array([data.texts[i][0] for i in data.a], dtype=object)
    prompts = sorted(set(prompt_of))
    if len(prompts) < MIN_PROMPTS_FOR_PROMPT_SPLIT:
        raise UsageError(f"the data has {len(prompts)} distinct prompts; --val-split prompts needs at least "
                         f"{MIN_PROMPTS_FOR_PROMPT_SPLIT} (use --val-split raters)", param="val_split")
    if frac <= 0:
        return np.zeros(len(prompt_of), dtype=bool)
    rng = np.random.default_rng(seed)
    held = {prompts[i] for i in rng.choice(len(prompts), size=max(1, round(frac * len(prompts))), replace=False)}
    return np.array([p in held for p in prompt_of], dtype=bool)


# The `--val-split` values whose validation pairs hold responses no training pair contains.
TEXT_HOLDOUT_SPLITS = tuple(s for s in VAL_SPLITS if s != "raters")

# `--val-split responses` needs this many distinct responses, for the same reason.
MIN_TEXTS_FOR_RESPONSE_SPLIT = 20


def response_validation_mask(data: PairData, frac: float, seed: int) -> np.ndarray:
    """Every pair holding one of a seeded `frac` of the distinct (prompt, response) texts: each validation
    pair has a response no training pair contains (the other may be a training response). Unlike
    `prompt_validation_mask` it works when every pair has the same prompt (Jester's jokes)."""
    n = len(data.texts)
    if n < MIN_TEXTS_FOR_RESPONSE_SPLIT:
        raise UsageError(f"the data has {n} distinct responses; --val-split responses needs at least "
                         f"{MIN_TEXTS_FOR_RESPONSE_SPLIT} (use --val-split raters)", param="val_split")
    if frac <= 0:
        return np.zeros(len(data.a), dtype=bool)
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).choice(n, size=max(1, round(frac * n)), replace=False)] = True
    return held[data.a] | held[data.b]


def validation_split(data: PairData, cfg: TrainConfig) -> np.ndarray:
    """The validation pairs `--val-split` asks for (see `validation_mask`, `prompt_validation_mask`,
    `response_validation_mask`)."""
    if cfg.val_split == "prompts":
        return prompt_validation_mask(data, cfg.val_frac, cfg.seed)
    if cfg.val_split == "responses":
        return response_validation_mask(data, cfg.val_frac, cfg.seed)
    return validation_mask(data.user, cfg.val_frac, cfg.seed)


# With at least this many raters, some are kept out of training to judge what ships (see `judges`).
MIN_RATERS_FOR_JUDGES = 40


@dataclass
class Judging:
    """Who judges the epochs and the prior: raters kept out of training, or the training raters' validation pairs.

    `val` marks the training raters' validation pairs (early stopping; none of the judges' pairs);
    `excluded` the judges' pairs (never trained on); `tasks_val` / `tasks_rows` what the few-shot
    tasks adapt from (~tasks_val) and score on (tasks_val), within tasks_rows.
    """

    val: np.ndarray
    excluded: np.ndarray
    tasks_val: np.ndarray
    tasks_rows: np.ndarray
    judges: np.ndarray  # per rater row: kept out of training

    @property
    def trained(self) -> np.ndarray:
        return ~self.judges


def judging(data: PairData, cfg: TrainConfig) -> Judging:
    """Keep `--judge-frac` of the raters (>= 8) out of training when there are MIN_RATERS_FOR_JUDGES or more: a
    rater the features were fitted to is adapted too easily (features can memorise their items), so raters
    training never saw judge what a new person will get. Fewer raters (or --judge-frac 0): the training
    raters' own validation pairs judge."""
    n = len(data.user_ids)
    judges = np.zeros(n, dtype=bool)
    if cfg.kind == "rfm" and cfg.judge_frac > 0 and n >= MIN_RATERS_FOR_JUDGES:
        chosen = np.random.default_rng(cfg.seed + 1).choice(n, size=max(8, round(cfg.judge_frac * n)), replace=False)
        judges[chosen] = True
    excluded = judges[data.user]
    split = validation_split(data, cfg)
    val = split & ~excluded
    if not judges.any():
        return Judging(val, excluded, val, np.ones(len(val), dtype=bool), judges)
    # judges adapt from half their pairs and are scored on the other half; with --val-split prompts or
    # responses, from their pairs of training texts and scored on the held-out ones (responses nobody trained on)
    half = (split if cfg.val_split in TEXT_HOLDOUT_SPLITS else validation_mask(data.user, 0.5, cfg.seed + 2)) & excluded
    return Judging(val, excluded, half, excluded, judges)


class RaterWeights(nn.Module):
    """w_h = w_0 + delta_h; the baseline keeps w_0 = 1 fixed (a scalar reward, d = 1)."""

    def __init__(self, n_users: int, d: int, trainable: bool, seed: int, init_shared: np.ndarray | None = None,
                 delta_init: float = 0.0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed + 1)
        init = torch.randn(d, generator=gen) / math.sqrt(d) if trainable else torch.ones(d)
        if init_shared is not None:
            init = torch.as_tensor(init_shared, dtype=torch.float32).clone()
        self.shared = nn.Parameter(init, requires_grad=trainable)
        # Small random deviations break the symmetry between raters from the first step: with all rows
        # equal, two opposing groups' gradients on the shared features cancel and training sits at chance.
        delta = torch.randn(n_users, d, generator=gen) * delta_init / math.sqrt(d)
        self.delta = nn.Parameter(delta, requires_grad=trainable)

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        return self.shared + self.delta[user]

    def matrix(self) -> np.ndarray:
        return (self.shared + self.delta).detach().cpu().numpy().astype(np.float64)


def bt_loss(phi_a: torch.Tensor, phi_b: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean negative Bradley-Terry log-likelihood and the margins."""
    margin = ((phi_a - phi_b) * w).sum(-1)
    return nn.functional.softplus(-margin).mean(), margin


@dataclass
class FitResult:
    weights: RaterWeights
    history: list[dict]
    best_epoch: int
    metrics: dict
    score: float = math.nan  # the best epoch's selection score (higher is better): what a decay search compares


@dataclass
class EarlyStopping:
    """Keep the best-scoring state (higher is better); stop after `patience` epochs without a gain,
    but never before `min_epochs` (rater weights of opposing groups need a few epochs to separate)."""

    patience: int
    min_epochs: int = 0
    min_delta: float = 1e-5
    best_score: float = -math.inf
    best_epoch: int = -1
    state: object = None
    _bad: int = 0

    def update(self, epoch: int, score: float, snapshot: Callable[[], object]) -> bool:
        """Record an epoch's score; False means: stop now."""
        if score > self.best_score + self.min_delta:
            self.best_score, self.best_epoch, self.state, self._bad = score, epoch, snapshot(), 0
            return True
        self._bad += 1
        return not (self._bad >= self.patience and epoch >= self.min_epochs)


# A selection score for the current state (higher is better) and figures to record with it.
Selector = Callable[["RaterWeights"], tuple[float, dict]]


def _epoch_batches(order: np.ndarray, batch_size: int, accelerator) -> list[np.ndarray]:
    """Minibatches of one epoch; under several processes each takes its share of every minibatch."""
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        if accelerator is not None and accelerator.num_processes > 1:
            share = rows[accelerator.process_index :: accelerator.num_processes]
            rows = share if len(share) else order[start : start + 1]
        batches.append(rows)
    return batches


# Shots an episode adapts from (drawn uniformly), and the most query pairs it scores.
EPISODE_SHOTS = (5, 10, 20)
EPISODE_QUERIES = 32


class EpisodicLoss:
    """`--episodic-loss`: train the features for what the product does with them. Each minibatch, a few
    training raters are each adapted from 5-20 of their training pairs, by one Newton step of the MAP
    logistic regression from the shared weights under the current raters' spread (what the runtime's
    adapter does, differentiably), and the adapted w is scored on their other pairs sharing no response
    with those (the Bradley-Terry loss of new responses). Features that only memorise a rater's
    pairs fit the rater weights but do not carry a few choices to new responses; this term does."""

    def __init__(self, data: PairData, train_rows: np.ndarray, raters: int):
        self.data, self.raters = data, raters
        self.by_rater = [rows for rows in (train_rows[data.user[train_rows] == u] for u in np.unique(data.user[train_rows]))
                         if len(rows) > min(EPISODE_SHOTS)]

    def _episode(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        m = int(rng.choice([s for s in EPISODE_SHOTS if s < len(rows)] or [min(EPISODE_SHOTS)]))
        order = rng.permutation(rows)
        support, rest = order[:m], order[m:]
        seen = set(self.data.a[support].tolist()) | set(self.data.b[support].tolist())
        query = np.array([r for r in rest if self.data.a[r] not in seen and self.data.b[r] not in seen], dtype=np.int64)
        return (support, query[:EPISODE_QUERIES]) if len(query) else None

    def __call__(self, featurise: Callable[[np.ndarray, bool], torch.Tensor], weights: RaterWeights,
                 rng: np.random.Generator) -> torch.Tensor:
        if not self.by_rater:
            return torch.zeros(())
        picked = rng.choice(len(self.by_rater), size=min(self.raters, len(self.by_rater)), replace=False)
        tasks = [t for t in (self._episode(self.by_rater[i], rng) for i in picked) if t is not None]
        if not tasks:
            return torch.zeros(())
        rows = np.concatenate([np.concatenate(t) for t in tasks])
        needed, inverse = np.unique(np.concatenate([self.data.a[rows], self.data.b[rows]]), return_inverse=True)
        phi = featurise(needed, True)
        delta = phi[inverse[: len(rows)]] - phi[inverse[len(rows):]]
        with torch.no_grad():  # the prior the runtime will use: the raters' spread around the shared weights
            matrix = weights.shared + weights.delta
            cov = torch.cov(matrix.T) if len(matrix) > 1 else torch.zeros(len(weights.shared), len(weights.shared))
            floor = 1e-2 + 1e-2 * torch.diagonal(cov).mean()
            precision = torch.linalg.inv(cov + floor * torch.eye(len(cov)))
        w0, losses, start = weights.shared, [], 0
        for support, query in tasks:
            x = delta[start : start + len(support)]
            q = delta[start + len(support) : start + len(support) + len(query)]
            start += len(support) + len(query)
            p = torch.sigmoid(x @ w0)
            hessian = (x * (p * (1 - p)).unsqueeze(1)).T @ x + precision
            w = w0 + torch.linalg.solve(hessian, ((1 - p).unsqueeze(1) * x).sum(0))
            losses.append(nn.functional.softplus(-(q @ w)).mean())
        return torch.stack(losses).mean()


def fit_bradley_terry(
    data: PairData,
    featurise: Callable[[np.ndarray, bool], torch.Tensor],
    trainable: Sequence[nn.Module],
    cfg: TrainConfig,
    d: int,
    progress: bool = True,
    module_lrs: Sequence[float] | None = None,
    init_shared: np.ndarray | None = None,
    accelerator=None,
    desc: str | None = None,
    val_mask: np.ndarray | None = None,
    select: Selector | None = None,
    exclude: np.ndarray | None = None,
) -> FitResult:
    """Minibatch AdamW on the BT objective, keeping the best epoch.

    `featurise(text_indices, train_mode)` returns phi for those distinct texts; `module_lrs` gives each
    trainable module its own learning rate (default: cfg.lr for all). The best epoch is the one with
    the highest `select(weights)` score (for an RFM: few-shot accuracy on new responses, see
    `train.selection`), else the lowest validation loss. With an `accelerate.Accelerator` running
    several processes, each takes its share of every minibatch and gradients are averaged across
    processes before each step (plain data parallelism, as DDP does).
    """
    import time

    from tqdm.auto import tqdm

    started = time.monotonic()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    val = validation_split(data, cfg) if val_mask is None else val_mask
    keep = np.ones(len(val), dtype=bool) if exclude is None else ~exclude  # `exclude`: never trained or validated on
    train_rows, val_rows = np.flatnonzero(~val & keep), np.flatnonzero(val & keep)
    weights = RaterWeights(len(data.user_ids), d, trainable=cfg.kind == "rfm", seed=cfg.seed,
                           init_shared=init_shared, delta_init=cfg.w_init if cfg.kind == "rfm" else 0.0)
    lrs = module_lrs or [cfg.lr] * len(trainable)
    groups = [{"params": [p for p in m.parameters() if p.requires_grad], "lr": lr, "weight_decay": cfg.weight_decay}
              for m, lr in zip(trainable, lrs, strict=True)]
    if cfg.kind == "rfm":
        groups.append({"params": list(weights.parameters()), "lr": cfg.lr * cfg.w_lr_scale, "weight_decay": 0.0})
    groups = [g for g in groups if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)

    def evaluate(rows: np.ndarray) -> tuple[float, float, float]:
        """Rater-weight BT loss and accuracy, and the BT loss of the shared w_0 alone."""
        if len(rows) == 0:
            return float("nan"), float("nan"), float("nan")
        with torch.no_grad():
            for m in trainable:
                m.eval()
            needed = np.unique(np.concatenate([data.a[rows], data.b[rows]]))
            phi = featurise(needed, False)
            pos = {t: i for i, t in enumerate(needed.tolist())}
            ia = torch.tensor([pos[t] for t in data.a[rows]])
            ib = torch.tensor([pos[t] for t in data.b[rows]])
            loss, margin = bt_loss(phi[ia], phi[ib], weights(torch.from_numpy(data.user[rows])))
            population, _ = bt_loss(phi[ia], phi[ib], weights.shared)
        return float(loss), float((margin > 0).float().mean()), float(population)

    history: list[dict] = []
    stopper = EarlyStopping(cfg.patience, cfg.min_epochs)
    episodes = EpisodicLoss(data, train_rows, cfg.episode_raters) if cfg.kind == "rfm" and cfg.episodic_loss > 0 else None

    def consider(epoch: int) -> bool:
        """Record this epoch and keep its state if it is the best so far. False means: stop early."""
        train_loss, train_acc, _ = evaluate(train_rows)
        val_loss, val_acc, val_population_loss = evaluate(val_rows)
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
               "val_acc": val_acc, "val_population_loss": val_population_loss}
        if select is not None and len(val_rows):
            with torch.no_grad():
                score, figures = select(weights)
            row.update(figures)
        else:
            score = -(val_loss if len(val_rows) else train_loss)
        history.append(row)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}", val_acc=f"{val_acc:.3f}",
                        **({"fewshot": f"{row['fewshot_acc']:.3f}"} if "fewshot_acc" in row else {}))
        keep_going = stopper.update(epoch, score, lambda: ([copy.deepcopy(m.state_dict()) for m in trainable],
                                                            copy.deepcopy(weights.state_dict())))
        return keep_going or not len(val_rows)

    bar = tqdm(range(1, cfg.epochs + 1), desc=desc or f"training {cfg.kind}", unit="epoch", disable=not progress)
    if init_shared is not None:
        consider(0)  # a warm start is itself a candidate: training must beat it
    for epoch in bar:
        for m in trainable:
            m.train()
        for rows in _epoch_batches(rng.permutation(train_rows), cfg.batch_size, accelerator):
            needed, inverse = np.unique(np.concatenate([data.a[rows], data.b[rows]]), return_inverse=True)
            phi = featurise(needed, True)
            ia, ib = inverse[: len(rows)], inverse[len(rows) :]
            loss, _ = bt_loss(phi[ia], phi[ib], weights(torch.from_numpy(data.user[rows])))
            if episodes is not None:
                loss = loss + cfg.episodic_loss * episodes(featurise, weights, rng)
            if cfg.kind == "rfm":
                loss = loss + cfg.w_l2 * (weights.delta.pow(2).sum(-1).mean() + 1e-3 * weights.shared.pow(2).sum())
                if cfg.population_loss > 0:  # keep w_0 a good reward for a rater we know nothing about
                    loss = loss + cfg.population_loss * bt_loss(phi[ia], phi[ib], weights.shared)[0]
            optimizer.zero_grad(set_to_none=True)
            if accelerator is not None and accelerator.num_processes > 1:
                accelerator.backward(loss)
                for group in optimizer.param_groups:
                    for param in group["params"]:
                        if param.grad is not None:
                            param.grad = accelerator.reduce(param.grad, reduction="mean")
            else:
                loss.backward()
            optimizer.step()
        if not consider(epoch):
            break
        if cfg.max_time and time.monotonic() - started > cfg.max_time:
            history[-1]["stopped"] = "max_time"
            break
    bar.close()
    module_states, weight_state = stopper.state
    for m, s in zip(trainable, module_states, strict=True):
        m.load_state_dict(s)
    weights.load_state_dict(weight_state)
    best_row = next(row for row in history if row["epoch"] == stopper.best_epoch)
    metrics = {k: v for k, v in best_row.items() if k != "epoch"}
    metrics.update(train_pairs=len(train_rows), val_pairs=len(val_rows), epochs_run=len(history))
    return FitResult(weights, history, stopper.best_epoch, metrics, stopper.best_score)


def population_prior(weights: np.ndarray, floor: float = 1e-4) -> dict[str, np.ndarray]:
    """Mean and a well-conditioned (Ledoit-Wolf shrunk, floored) covariance of rater weight rows."""
    d = weights.shape[1]
    mean = weights.mean(axis=0)
    if weights.shape[0] < 2:
        cov = np.eye(d) * floor
    else:
        from sklearn.covariance import LedoitWolf

        cov = LedoitWolf().fit(weights).covariance_
        cov = 0.5 * (cov + cov.T) + floor * np.eye(d)
    return {"mean": mean, "cov": cov, "count": np.array(weights.shape[0])}


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)



def fewshot_selector(data: PairData, judge: Judging, phi_of: Callable[[np.ndarray], np.ndarray],
                     seed: int) -> Selector:
    """The RFM's selection score: few-shot accuracy of adapted training raters on new validation responses.

    Each call adapts every rater from 0/5/10/20 of their training pairs under the current rater
    weights' prior (its width chosen as `rfm train` will choose it; 0 = the prior mean alone) and
    scores their validation pairs that share no text with those; `phi_of(text_indices)` gives the
    current features of those texts.
    """
    from rfm.train.prior import SHRINK_FACTORS, choose_prior_width
    from rfm.train.selection import fewshot_tasks, population_scores

    tasks = fewshot_tasks(data.user, judge.tasks_val, data.a, data.b, draws=1, seed=seed, rows=judge.tasks_rows)
    rows = np.unique(np.concatenate([np.concatenate([t.adapt, t.test]) for t in tasks])) if tasks else np.zeros(0, int)
    needed = np.unique(np.concatenate([data.a[rows], data.b[rows]])) if len(rows) else np.zeros(0, int)

    def select(weights: RaterWeights) -> tuple[float, dict]:
        if not tasks:
            return 0.0, {}
        phi = np.zeros((len(data.texts), weights.shared.shape[0]))
        phi[needed] = phi_of(needed)
        delta = phi[data.a] - phi[data.b]
        prior = population_prior(weights.matrix()[judge.trained])
        width = choose_prior_width(delta, data.user, judge.tasks_val, prior["mean"], prior["cov"], tasks=tasks,
                                   shrink=SHRINK_FACTORS if judge.judges.any() else ())
        population = population_scores(delta, tasks, weights.shared.detach().double().numpy())
        return width["fewshot_acc"], {"fewshot_acc": width["fewshot_acc"], "fewshot_population_acc": population,
                                      "fewshot_prior_width": width["margin_variance"]}

    return select


def head_features(head: nn.Module, embeddings: torch.Tensor, tokens: TokenStates | None,
                  rows: np.ndarray) -> torch.Tensor:
    """phi of these distinct texts from their cached pooled vectors (and token states, for a TokenHead)."""
    if not isinstance(head, TokenHead):
        return head(embeddings[torch.from_numpy(rows)])
    # Without gradients, in chunks: the per-token hidden layer of every text at once would take gigabytes.
    step = max(1, len(rows)) if torch.is_grad_enabled() else 512
    return torch.cat([head.packed(embeddings[torch.from_numpy(part)], *tokens.gather(part))
                      for part in np.array_split(rows, max(1, -(-len(rows) // step)))])


def fit_head_on_embeddings(data: PairData, embeddings: np.ndarray, head: nn.Module, cfg: TrainConfig, d: int,
                           progress: bool = True, tokens: TokenStates | None = None, desc: str | None = None
                           ) -> FitResult:
    """Train the head (and W) on cached pooled embeddings (and, for `--head tokens`, token states).

    A standardising first layer of the head is set from these embeddings. With `warm_start` (RFM,
    linear or tokens head), the population reward is fitted first as a one-feature Bradley-Terry
    model; it becomes feature 0 with w_0 = e_0, so training starts from the non-adaptive model and the best
    epoch (epoch 0 included) must beat it. An RFM's epochs are judged by few-shot adaptation of the
    training raters on new validation responses (`fewshot_selector`).
    """
    from dataclasses import replace

    from rfm.train.model import Standardize

    emb = torch.from_numpy(embeddings)
    pooled_head = head.pooled if isinstance(head, TokenHead) else head
    layers = list(pooled_head) if isinstance(pooled_head, nn.Sequential) else []
    standardize = next((m for m in layers if isinstance(m, Standardize)), None)
    if standardize is not None:
        standardize.fit(emb)

    def featurise_with(module: nn.Module):
        return lambda idx, train_mode: head_features(module, emb, tokens, idx)

    judge = judging(data, cfg)
    val = judge.val
    init_shared = None
    linear = layers[-1] if layers else None
    if cfg.kind == "rfm" and cfg.warm_start and cfg.head in ("linear", "tokens") and isinstance(linear, nn.Linear):
        front = [copy.deepcopy(standardize)] if standardize is not None else []
        population = nn.Sequential(*front, nn.Dropout(cfg.dropout), nn.Linear(embeddings.shape[1], 1))
        # The raters' own validation pairs stop the warm start too: it trains on exactly the pairs the
        # RFM trains on, so epoch 0 is judged on pairs it never fitted (and so is the prior's width).
        pooled = PairData(data.texts, data.a, data.b, np.zeros_like(data.user), [POPULATION_USER])
        fit_bradley_terry(pooled, featurise_with(population), [population], replace(cfg, kind="baseline"), 1,
                          progress, desc="warm start: population reward", val_mask=val, exclude=judge.excluded)
        with torch.no_grad():
            linear.bias.zero_()
            linear.weight[0] = population[-1].weight[0]
            linear.bias[0] = population[-1].bias[0]
        init_shared = np.eye(d)[0]
    select = None
    if cfg.kind == "rfm" and cfg.selection == "fewshot":
        def phi_of(idx: np.ndarray) -> np.ndarray:
            head.eval()
            return head_features(head, emb, tokens, idx).double().numpy()

        select = fewshot_selector(data, judge, phi_of, cfg.seed)
    return fit_bradley_terry(data, featurise_with(head), [head], cfg, d, progress, init_shared=init_shared,
                             val_mask=val, select=select, exclude=judge.excluded, desc=desc)
