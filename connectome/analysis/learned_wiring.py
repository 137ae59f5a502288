"""Learned wiring as a picture: a trained trial's static connection weights, source by target, per block.

A join (connectome.joins) declares its learned per-edge weights by overriding `Join.edge_weights()`
(in-edge position -> the weight as its forward applies it); every other join has none. The table
holds one row per such in-edge with its weight, the weight a freshly built network starts with
(`initial`) and the difference (`change`): the figure colours the change, so white is "as
initialised" whatever the initialisation was. Joins whose per-edge weights depend on the input
declare them by `Join.token_weights(inputs)` (MUDDFormer's `mudd`, AttnRes' `depth-attention`, in
named ports too): forward hooks record them over the trial's fixed validation windows and a second
table and figure give each edge's mean weight and its spread (standard deviation) over those tokens.
Other input-dependent joins (`gated`: the gate T(x), per channel; the stream mixings, per stream) are
named as dynamic, not drawn (docs/design.md, "Learned wiring as a picture").
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from connectome.aggregations import get_aggregation
from connectome.analysis.figures import plural, save_figure
from connectome.errors import ConfigError, ConnectomeError
from connectome.store.layout import StudyDir, TrialFiles

if TYPE_CHECKING:
    from connectome.spec import NetworkSpec

COLUMNS = ["block", "target", "port", "source", "kind", "weight", "initial", "change"]
MAX_ANNOTATED = 160  # cells per panel written with their weight; larger maps are colour only


def edge_weight_table(model, start=None) -> pd.DataFrame:
    """One row per in-edge of every join with static learned weights (COLUMNS), in network order; a named
    input port's join (muddformer's static ports) gives its port's in-edges, with the port.

    `start`: the same network as built before training (default: built afresh from the model's spec,
    seeded, so an initialisation drawn at random would show one draw).
    """
    start = initial_model(model.spec) if start is None else start
    rows = []
    for (b, v, port, join), (*_, fresh) in zip(all_joins(model), all_joins(start), strict=True):
        weights = join.edge_weights()
        if weights is None:
            continue
        initial, sources = fresh.edge_weights(), _join_sources(model.blocks[b - 1], v, port, len(weights))
        rows += [(b, v, port, sources[i], join.kind, w, initial[i], w - initial[i]) for i, w in weights.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def initial_model(spec: NetworkSpec):
    """The network of `spec` as built before training (seeded; the caller's random state is kept)."""
    import torch

    from connectome.executor import ConnectomeNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ConnectomeNet(spec).eval()


def dynamic_joins(model) -> Counter:
    """Joins with learned parameters but neither static nor per-token edge weights (not drawn), by kind."""
    return Counter(join.kind for _, _, _, join in all_joins(model)
                   if join.edge_weights() is None and not records_tokens(join)
                   and next(join.parameters(), None) is not None)


def all_joins(model) -> Iterator[tuple[int, int, str, Any]]:
    """(block from 1, node id, port ("": the default input), join) of every join of the model."""
    for b, block in enumerate(model.blocks, start=1):
        for key, node in block.nodes.items():
            yield b, int(key), "", node.join
            for port, join in node.port_joins.named_children():
                yield b, int(key), port, join


def records_tokens(join) -> bool:
    """Whether the join's kind declares per-token edge weights (Join.token_weights)."""
    from connectome.joins import Join

    return type(join).token_weights is not Join.token_weights


# Dynamic weights: recorded per token over validation inputs by forward hooks, summarised per edge.
DYNAMIC_COLUMNS = ["block", "target", "port", "source", "kind", "mean", "std", "tokens"]


def dynamic_weight_table(model, batches: Iterable) -> pd.DataFrame:
    """One row per in-edge of every join with per-token weights (DYNAMIC_COLUMNS): the mean and standard
    deviation over every position of `batches` (model inputs) of the weight the join applied there."""
    import torch

    sums: dict[tuple, list] = {}
    hooks = [join.register_forward_hook(_recorder(sums, (b, v, port, join.kind)))
             for b, v, port, join in all_joins(model) if records_tokens(join)]
    try:
        with torch.no_grad():
            model.eval()
            for x in batches:
                model(x)
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for (b, v, port, kind), (total, squares, count) in sums.items():
        mean = total / count
        std = (squares / count - mean.square()).clamp_min(0).sqrt()
        sources = _join_sources(model.blocks[b - 1], v, port, len(mean))
        rows += [(b, v, port, u, kind, float(m), float(s), count) for u, m, s in zip(sources, mean, std)]
    return pd.DataFrame(rows, columns=DYNAMIC_COLUMNS)


def _recorder(sums: dict, key: tuple):
    """A forward hook adding the join's per-position weights to sums[key] = [sum, sum of squares, positions]."""

    def hook(join, args, output):
        w = join.token_weights(args[0]).detach().double().flatten(0, -2)  # (positions, n)
        acc = sums.setdefault(key, [0.0, 0.0, 0])
        acc[0], acc[1], acc[2] = acc[0] + w.sum(0), acc[1] + w.square().sum(0), acc[2] + w.shape[0]

    return hook


def _join_sources(block, v: int, port: str, n: int) -> list[int]:
    """The source node of each input position of node v's join of `port` (the node's own output first, as v)."""
    edges = block.spec.port_inputs(v).get(port, ())
    return [v] * (n - len(edges)) + [e.src for e in edges]


def has_learned_joins(spec: NetworkSpec) -> bool:
    """Whether any join of the spec declares learned parameters (torch-free: the kinds' cost formulas)."""
    return any(_join_params(block, node) for block in spec.blocks for node in block.nodes[1:])


def _join_params(block, node) -> int:
    edges = block.inputs[node.id]
    if not edges:
        return 0
    cost = get_aggregation(node.agg).cost(len(edges), block.read_width(edges[0]), 1, dict(node.options))
    return cost.params


def join_kinds(spec: NetworkSpec) -> str:
    """`sum (13), concat (1)`: the aggregation kinds of a spec's joins, most frequent first."""
    counts = Counter(node.agg for block in spec.blocks for node in block.nodes[1:])
    return ", ".join(f"{kind} ({n})" for kind, n in counts.most_common())


# The figure: one panel per block, targets (joins with learned weights) by their sources.

def block_matrices(table: pd.DataFrame, value: str) -> list[tuple[int, pd.DataFrame]]:
    """Per block, the targets (`node`, or `node.port` for a named port) x sources matrix of `value` (NaN: no
    edge), ids ascending, a node's default input before its ports."""
    rows = table.assign(reader=[_reader(v, p) for v, p in zip(table["target"], table["port"])])
    out = []
    for b, part in rows.groupby("block", sort=True):
        m = part.pivot(index="reader", columns="source", values=value).sort_index(axis=1)
        out.append((int(b), m.loc[part.sort_values(["target", "port"]).drop_duplicates("reader")["reader"]]))
    return out


def _reader(target: int, port: str) -> str:
    return f"{int(target)}.{port}" if port else str(int(target))


def plot_learned_wiring(table: pd.DataFrame, title: str = "") -> Figure:
    """Per block: colour = learned weight minus its initial value (diverging, white = unchanged); cells: weights."""
    changes, weights = block_matrices(table, "change"), dict(block_matrices(table, "weight"))
    wide = max(m.shape[1] for _, m in changes)
    cell = 0.4 if max(m.size for _, m in changes) <= MAX_ANNOTATED else 0.16  # inches: room for a number, or not
    tall = [max(2.2, 0.8 * cell * m.shape[0] + 1.4) for _, m in changes]
    fig = Figure(figsize=(max(5.0, cell * wide + 2.5), sum(tall)), layout="constrained")
    axes = fig.subplots(len(changes), 1, squeeze=False, height_ratios=tall)[:, 0]
    vmax = max(float(np.nanmax(np.abs(table["change"]))), 1e-3)
    for ax, (b, change) in zip(axes, changes):
        im = ax.imshow(np.ma.masked_invalid(change.to_numpy(float)), cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                       aspect="auto")
        if change.size <= MAX_ANNOTATED:
            _annotate(ax, weights[b].to_numpy(float), np.abs(change.to_numpy(float)) > 0.6 * vmax)
        ax.set_facecolor("0.85")  # grey: no edge
        ax.set_xticks(range(change.shape[1]), [_node_label(u) for u in change.columns], fontsize=7)
        ax.set_yticks(range(change.shape[0]), [str(v) for v in change.index], fontsize=7)
        ax.set_xlabel("source node")
        ax.set_ylabel("target node")
        ax.set_title(f"block {b}: learned weights", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.9, label="change from the start")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_dynamic_wiring(table: pd.DataFrame, title: str = "") -> Figure:
    """Per block: colour = mean per-token weight (diverging, white = 0), beside its spread (standard deviation)."""
    means, stds = block_matrices(table, "mean"), dict(block_matrices(table, "std"))
    wide = max(m.shape[1] for _, m in means)
    cell = 0.4 if max(m.size for _, m in means) <= MAX_ANNOTATED else 0.16
    tall = [max(2.2, 0.8 * cell * m.shape[0] + 1.4) for _, m in means]
    fig = Figure(figsize=(2 * max(4.0, cell * wide + 2.5), sum(tall)), layout="constrained")
    axes = fig.subplots(len(means), 2, squeeze=False, height_ratios=tall)
    vmax = max(float(np.nanmax(np.abs(table["mean"]))), 1e-3)
    smax = max(float(np.nanmax(table["std"])), 1e-3)
    for (left, right), (b, mean) in zip(axes, means):
        std = stds[b]
        panels = ((left, mean, "RdBu_r", -vmax, vmax, "mean weight over the validation tokens", vmax),
                  (right, std, "viridis", 0.0, smax, "its spread (standard deviation)", None))
        for ax, m, cmap, lo, hi, what, dark_at in panels:
            im = ax.imshow(np.ma.masked_invalid(m.to_numpy(float)), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            if m.size <= MAX_ANNOTATED:
                values = m.to_numpy(float)
                dark = np.abs(values) > 0.6 * dark_at if dark_at else values < 0.5 * hi
                _annotate(ax, values, dark)
            ax.set_facecolor("0.85")
            ax.set_xticks(range(m.shape[1]), [_node_label(u) for u in m.columns], fontsize=7)
            ax.set_yticks(range(m.shape[0]), list(m.index), fontsize=7)
            ax.set_xlabel("source node")
            ax.set_ylabel("target node (.port)")
            ax.set_title(f"block {b}: {what}", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def dynamic_caption(table: pd.DataFrame, name: str) -> str:
    """What the dynamic figure shows."""
    tokens = int(table["tokens"].max())
    return (f"Per-token connection weights of {name} ({', '.join(sorted(set(table['kind'])))}): one row of panels per "
            f"block, rows the joins (`node.port` for a named input port), columns their sources; left, the mean "
            f"weight each join gave the source over {tokens:,} validation positions (red: positive, blue: negative); "
            "right, its standard deviation over the same positions (how much the weight varies by token). "
            "Grey = no edge.")


def _annotate(ax, weights: np.ndarray, dark: np.ndarray) -> None:
    """Each weight in its cell; white on the darkest colours."""
    for (r, c), w in np.ndenumerate(weights):
        if np.isfinite(w):
            ax.text(c, r, f"{w:.2g}", ha="center", va="center", fontsize=6, color="white" if dark[r, c] else "black")


def _node_label(node: int) -> str:
    return "in" if node == 0 else str(node)


def _source_name(node: int) -> str:
    return "the block input (node 0)" if node == 0 else f"node {node}"


# Words: what the initialisation was and what training changed most.

# (test on one target's initial weights in source order, words); the first that holds describes the target.
STARTS: list[tuple[Callable[[np.ndarray], bool], str]] = [
    (lambda w: bool(np.all(w == 1.0)), "1 on each in-edge"),
    (lambda w: bool(np.all(w == 0.5)), "1/2 on each in-edge"),
    (lambda w: len(w) > 1 and w[-1] == 1.0 and bool(np.all(w[:-1] == 0.0)),
     "one-hot: 1 on the nearest (highest-id) source, 0 on the others"),
    (lambda w: bool(np.allclose(w, 1.0 / len(w))), "1/n on each of a target's n in-edges (a mean)"),
]
OTHER_START = "its own per-edge values (the `initial` column of `connectome wiring`)"


def describe_start(table: pd.DataFrame) -> str:
    """The initialisation in words: one phrase when every target started alike, else each phrase with its targets."""
    targets: dict[str, list[tuple[int, str]]] = {}
    for (_, v, port), rows in table.groupby(["block", "target", "port"], sort=True):
        w = rows.sort_values("source")["initial"].to_numpy(float)
        words = next((words for test, words in STARTS if test(w)), OTHER_START)
        targets.setdefault(words, []).append((int(v), port))
    if len(targets) == 1:
        return next(iter(targets))
    return "; ".join(f"{words} ({_nodes(nodes)})"
                     for words, nodes in targets.items())


def _nodes(nodes: list[tuple[int, str]]) -> str:
    """`node 2`, `nodes 2, 5, 7.q`: targets and their ports (the same one in several blocks named once)."""
    ids = sorted(set(nodes))
    return f"node{'s' if len(ids) > 1 else ''} {', '.join(_reader(v, p) for v, p in ids)}"


def block_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per block: the weight that moved most from its start, and the mean move."""
    sentences = []
    for b, rows in table.groupby("block", sort=True):
        top = rows.loc[rows["change"].abs().idxmax()]
        mean = float(rows["change"].abs().mean())
        if top["change"] == 0:
            sentences.append(f"Block {b}: none of its {plural(len(rows), 'learned weight')} moved from its start.")
            continue
        reader = f"node {int(top['target'])}" + (f" port {top['port']}" if top["port"] else "")
        sentences.append(f"Block {b}: the largest change is {reader}'s weight on "
                         f"{_source_name(int(top['source']))}, {top['initial']:.3g} -> {top['weight']:.3g} "
                         f"({top['change']:+.3g}); mean absolute change {mean:.3g} over "
                         f"{plural(len(rows), 'learned weight')}.")
    return sentences


def caption(table: pd.DataFrame, name: str, dynamic: Counter) -> str:
    """What the figure shows, what the weights started at, and what it leaves out."""
    left_out = "".join(f" Not drawn: {plural(n, f'{kind} join')}, whose weights depend on the input (dynamic)."
                       for kind, n in sorted(dynamic.items()))
    return (f"Learned connection weights of {name}: one panel per block, rows the joins with learned per-edge "
            f"weights ({', '.join(sorted(set(table['kind'])))}), columns their sources (node ids of `connectome "
            "graph`; `in` = the block input); each cell's number is the learned weight as the sum applies it, its "
            f"colour the change from the initialisation (white: unchanged; red: grew; blue: shrank); grey = no "
            f"edge. Initialisation: {describe_start(table)}.{left_out}")


# Trials: the CLI's one trial and the report's best trial per pattern.

class TrialWiring(NamedTuple):
    """What a trained trial's joins learned: static weights, per-token weights, joins not drawn, the spec."""

    table: pd.DataFrame  # COLUMNS
    tokens: pd.DataFrame  # DYNAMIC_COLUMNS (empty: no join with per-token weights)
    dynamic: Counter
    spec: NetworkSpec


def trial_wiring(trial_dir: Path) -> TrialWiring:
    """The edge-weight tables (static; per token over the validation windows), the joins not drawn and the spec."""
    from connectome.analysis.usage import load_trial_model

    model = load_trial_model(trial_dir)
    per_token = any(records_tokens(join) for *_, join in all_joins(model))
    tokens = dynamic_weight_table(model, validation_inputs(Path(trial_dir))) if per_token else \
        pd.DataFrame(columns=DYNAMIC_COLUMNS)
    return TrialWiring(edge_weight_table(model), tokens, dynamic_joins(model), model.spec)


VALIDATION_IMAGES = 256  # an image trial's validation subset for per-token (per-position) weights


def validation_inputs(trial_dir: Path) -> list:
    """The model inputs of a trial's fixed validation data, in batches: a language model's validation windows
    (as training evaluated them), an image trial's seeded validation subset (connectome.analysis.lesion)."""
    from connectome.analysis.lesion import trial_config, validation_subset, validation_windows

    if trial_config(trial_dir).data.name == "text":
        return list(validation_windows(trial_dir)[0].split(64))
    return list(validation_subset(trial_dir, VALIDATION_IMAGES)[0].split(128))


def has_learned_model(files: TrialFiles) -> bool:
    """Whether a trial kept its model and its spec declares joins with learned parameters (no torch)."""
    from connectome.spec import NetworkSpec

    if not (files.spec.exists() and files.model.exists()):
        return False
    try:
        return has_learned_joins(NetworkSpec.from_json(files.spec.read_text()))
    except (ConnectomeError, OSError, ValueError, KeyError):
        return False


def candidates(results) -> pd.DataFrame:
    """Completed trials that kept a model whose joins have learned parameters."""
    completed = results.completed()
    if completed.empty or "trial_id" not in completed:
        return completed
    sd = StudyDir(results.path)
    return completed[[has_learned_model(sd.trial(str(t))) for t in completed["trial_id"]]]


def write_learned_wiring(results_dir: str | Path, trial_id: str | None = None
                         ) -> tuple[str, list[Path], pd.DataFrame, list[str], pd.DataFrame]:
    """figures/learned_wiring_<trial>.png/.svg (static weights) and learned_wiring_dynamic_<trial> (per-token)
    of one trial (default: lowest validation error among those with learned weights); returns the trial, the
    figure paths, the static table, the sentences and the per-token table."""
    from connectome.analysis import load

    results = load(results_dir)
    sd = StudyDir(results.path)
    trial_id = trial_id or _best(results)
    files = sd.trial(trial_id)
    if not files.dir.is_dir():
        known = sorted(p.name for p in sd.trials.iterdir() if p.is_dir()) if sd.trials.is_dir() else []
        raise ConfigError(f"no trial {trial_id!r} in {sd.trials} (known: {', '.join(known[:8]) or 'none'}"
                          f"{' ...' if len(known) > 8 else ''})")
    wiring = trial_wiring(files.dir)
    table, tokens = wiring.table, wiring.tokens
    if table.empty and tokens.empty:
        raise ConfigError(f"trial {trial_id} has no learned connection weights: its joins are "
                          f"{join_kinds(wiring.spec)} (static per-edge weights come from: "
                          f"{', '.join(kinds_with_edge_weights())}; per-token ones from: "
                          f"{', '.join(kinds_with_token_weights())})")
    paths = []
    if not table.empty:
        fig = plot_learned_wiring(table, title=f"learned wiring: trial {trial_id}")
        paths += save_figure(fig, sd.figure(f"learned_wiring_{trial_id}"))
    if not tokens.empty:
        fig = plot_dynamic_wiring(tokens, title=f"per-token wiring: trial {trial_id}")
        paths += save_figure(fig, sd.figure(f"learned_wiring_dynamic_{trial_id}"))
    sentences = (block_sentences(table) if not table.empty else []) + dynamic_sentences(tokens)
    return trial_id, paths, table, sentences, tokens


def dynamic_sentences(tokens: pd.DataFrame) -> list[str]:
    """One sentence per block of the per-token table: its most varying edge weight."""
    sentences = []
    for b, rows in tokens.groupby("block", sort=True):
        top = rows.loc[rows["std"].idxmax()]
        reader = f"node {int(top['target'])}" + (f" port {top['port']}" if top["port"] else "")
        sentences.append(f"Block {b} (per token): {reader}'s weight on {_source_name(int(top['source']))} varies "
                         f"most, mean {top['mean']:.3g}, standard deviation {top['std']:.3g} over "
                         f"{int(top['tokens']):,} validation positions.")
    return sentences


def kinds_with_token_weights() -> list[str]:
    """The registered aggregation kinds whose join declares per-token edge weights."""
    from connectome.joins import JOINS, Join

    return sorted(name for name, cls in JOINS.items() if cls.token_weights is not Join.token_weights)


def kinds_with_edge_weights() -> list[str]:
    """The registered aggregation kinds whose join declares static per-edge weights."""
    from connectome.joins import JOINS, Join

    return sorted(name for name, cls in JOINS.items() if cls.edge_weights is not Join.edge_weights)


def _best(results) -> str:
    """The trial with the lowest validation error among those with learned joins (never chosen on test)."""
    from connectome.analysis.report import select_per_pattern

    kept = candidates(results)
    if kept.empty:
        raise ConfigError(f"no completed trial of {results.path} kept a model with learned connection weights")
    chosen, _ = select_per_pattern(kept)
    return str(chosen["trial_id"].iloc[0])


def learned_wiring_section(doc, results, out: Path, refused: list[str]) -> None:
    """Report section: per pattern with learned connection weights, its trial chosen on validation, drawn."""
    from connectome.analysis.report import select_per_pattern
    from connectome.analysis.results import factor_columns
    from connectome.store.labels import trial_label

    kept = candidates(results)
    if kept.empty or "pattern" not in kept:
        return
    chosen, how = select_per_pattern(kept)
    factors, shown = factor_columns(results.completed()), []
    for _, row in chosen.sort_values("pattern", kind="stable").iterrows():
        read = _read_chosen(StudyDir(results.path).trial(str(row["trial_id"])), refused)
        if read is not None:
            shown.append((trial_label(row, seed=row.get("seed"), keys=factors), str(row["trial_id"]), read))
    if not shown:
        return
    doc.heading("Learned wiring")
    doc.text(f"The learned connection weights of each pattern that has them, in its trial chosen by {how} "
             "(never on test data): what training made of the wiring, beside what it started as.")
    for name, trial_id, read in shown:
        doc.heading(f"{name} (`{trial_id}`)", level=3)
        if isinstance(read, str):
            doc.text(f"No learned-wiring figure: {read}")
            continue
        if not read.table.empty:
            paths = save_figure(plot_learned_wiring(read.table, title=f"learned wiring: {name}"),
                                StudyDir(out).figure(f"learned_wiring_{trial_id}"))
            doc.figure(*paths, caption=caption(read.table, name, read.dynamic))
            for sentence in block_sentences(read.table):
                doc.text(sentence)
        if not read.tokens.empty:
            paths = save_figure(plot_dynamic_wiring(read.tokens, title=f"per-token wiring: {name}"),
                                StudyDir(out).figure(f"learned_wiring_dynamic_{trial_id}"))
            doc.figure(*paths, caption=dynamic_caption(read.tokens, name))
            for sentence in dynamic_sentences(read.tokens):
                doc.text(sentence)


def _read_chosen(files: TrialFiles, refused: list[str]) -> TrialWiring | str | None:
    """A chosen trial's wiring; why it cannot be read; None when it has neither static nor per-token weights."""
    from connectome.analysis.usage import RefusedFileError

    try:
        wiring = trial_wiring(files.dir)
    except RefusedFileError as err:
        refused.append(str(err))
        return str(err)
    except (ConnectomeError, OSError, RuntimeError, ValueError, KeyError) as err:
        return str(err)
    return None if wiring.table.empty and wiring.tokens.empty else wiring  # e.g. only gates
