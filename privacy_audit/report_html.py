"""The compliance report as one self-contained HTML file (figures embedded as PNG data URIs).

It shows no real training image unless ``show_real`` is set: a report that prints the training images nearest
to each synthetic one would itself leak them.
"""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np

from cxr_fedsynth.common.evaluation.html_images import figure_data_uri, image_data_uri
from cxr_fedsynth.common.publish.sample_grid import grid_image

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.pass{background:#d9f2d9}.fail{background:#f8d0d0}.banner{font-size:1.4em;padding:.6em;border-radius:6px}
.small{color:#555;font-size:.9em}
"""


def _roc_figure(report: dict) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for attack in report["attacks"]["overall"]:
        ax.plot(attack["roc_fpr"], attack["roc_tpr"], label=f"{attack['name']} (AUC {attack['auc']:.2f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set_xlabel("false positive rate (non-members flagged)")
    ax.set_ylabel("true positive rate (members found)")
    ax.legend(fontsize=7)
    ax.set_title("Membership inference, patient level")
    return figure_data_uri(fig)


def _dcr_figure(report: dict) -> str:
    dcr = report["distance"]["overall"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(dcr["synthetic_to_train"], bins=40, alpha=0.6, density=True, label="synthetic -> nearest training image")
    ax.hist(dcr["holdout_to_train"], bins=40, alpha=0.6, density=True, label="unseen patient -> nearest training image")
    ax.set_xlabel("L2 distance (pixels in [0, 1])")
    ax.legend(fontsize=7)
    ax.set_title("Distance to closest training record")
    return figure_data_uri(fig)


def _table(rows: list[list[str]], header: list[str], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = ""
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if classes else ""
        body += f"<tr{css}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(report: dict, data, *, show_real: bool) -> str:
    """The whole HTML page."""
    passed = report["passed"]
    verdict_rows = [
        [v["check"], v["value"], v["threshold"], "PASS" if v["passed"] else "FAIL", v["meaning"]]
        for v in report["verdicts"]
    ]
    verdict_css = ["pass" if v["passed"] else "fail" for v in report["verdicts"]]
    attack_rows = [
        [
            a["name"],
            f"{a['auc']:.3f}",
            f"{a['auc_ci'][0]:.3f}-{a['auc_ci'][1]:.3f}",
            f"{a['tpr_at_fpr']['0.001']:.3f}",
            f"{a['tpr_at_fpr']['0.01']:.3f}",
            f"{a['advantage']:.3f}",
            f"{a['empirical_epsilon']:.3f}",
        ]
        for a in report["attacks"]["overall"]
    ]
    claimed = report["claimed_epsilon"]
    classes = report["generator"]["classes"]
    rows = [data.generated[data.generated_labels == i][:8] for i in range(len(classes))]
    grid = grid_image(
        [r if len(r) else np.zeros((1, 8, 8), np.uint8) for r in rows], classes, title="Generated samples (synthetic)"
    )
    copy_rows = []
    for space, c in report["memorization"]["overall"].items():
        copy_rows.append(
            [
                space,
                c["samples"],
                c["copies"],
                f"{c['copy_rate']:.4f}",
                f"{c['min_ratio']:.3f}",
                f"{c['median_nndr']:.3f}",
            ]
        )
    per_class_rows = []
    for cls, spaces in report["memorization"]["per_class"].items():
        dcr = report["distance"]["per_class"].get(cls, {})
        per_class_rows.append(
            [
                cls,
                spaces["pixel"]["copies"],
                spaces["embedding"]["copies"],
                f"{dcr.get('share_closer_to_train', float('nan')):.3f}",
            ]
            + [f"{a['auc']:.3f}" for a in report["attacks"]["per_class"].get(cls, [])]
        )
    per_class_header = ["class", "copies (pixel)", "copies (embedding)", "closer-to-train share"] + [
        a["name"] for a in report["attacks"]["overall"]
    ]
    real_section = ""
    if show_real:
        pairs = report["memorization"]["overall"]["pixel"]
        shown = list(zip(pairs["copy_indices"], pairs["nearest_train"]))[:8]
        if shown:
            tiles = [
                np.stack([data.generated[g] for g, _ in shown]),
                np.stack([data.train.images[t] for _, t in shown]),
            ]
            real_section = f"<h3>Closest pairs (REAL TRAINING IMAGES SHOWN: --show-real)</h3><img src='{image_data_uri(grid_image(tiles, ['synthetic', 'nearest real'], title='near-copies'))}'>"
    else:
        real_section = (
            "<p class='small'>No real training image is shown (pass --show-real to include the near-copy pairs).</p>"
        )
    dcr = report["distance"]["overall"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Privacy audit: {html.escape(str(report["generator"]["run_name"]))}</title><style>{STYLE}</style></head><body>
<h1>Privacy audit of a synthetic chest X-ray generator</h1>
<div class="banner {"pass" if passed else "fail"}" id="overall">Overall verdict: <b>{"PASS" if passed else "FAIL"}</b> &mdash; {sum(v["passed"] for v in report["verdicts"])} of {len(report["verdicts"])} checks pass the policy.</div>
<p>Generator <code>{html.escape(str(report["generator"]["run_name"]))}</code> (weights SHA-256 <code>{html.escape(str(report["generator"]["weights_sha256"])[:16])}…</code>);
{"claimed epsilon " + format(claimed, ".3g") + " (delta " + format(report["delta"], "g") + ") per site" if claimed is not None else "<b>NOT PRIVATE: trained without differential privacy</b>"}.
Members: {report["inputs"]["train"]["patients"]} training patients ({report["inputs"]["train"]["images"]} images); non-members: {report["inputs"]["holdout_non_members"]["patients"]} unseen patients; {report["inputs"]["generated"]["images"]} generated images.</p>
<h2>Verdicts</h2>
{_table(verdict_rows, ["check", "value", "threshold", "verdict", "what it means"], verdict_css)}
<h2>Membership inference</h2>
<p>Each attack scores every candidate patient; a good generator leaves it at chance (AUC 0.5). TPR at low FPR
shows whether a few patients can be singled out with confidence. The empirical epsilon is the lower bound the
attack proves (Clopper-Pearson, 95%); it must stay below the claimed epsilon.</p>
{_table(attack_rows, ["attack", "AUC", "AUC 95% CI", "TPR @ FPR 0.1%", "TPR @ FPR 1%", "advantage", "empirical epsilon"])}
<img src="{_roc_figure(report)}">
<h2>Memorization</h2>
<p>A generated image is a near-copy when its nearest training image is under {report["policy"]["copy_ratio"]:.2f} of its mean distance to
its 50 nearest training images (Carlini et al. 2023); checked in pixel space and in an embedding learned on unseen images.</p>
{_table(copy_rows, ["space", "generated", "near-copies", "rate", "min ratio", "median NN/2nd-NN"])}
<h2>Distance to closest record</h2>
<p>Median distance synthetic→train {dcr["median_synthetic"]:.3f}, unseen→train {dcr["median_holdout"]:.3f}; share of synthetic images closer to
train than to an equal-size unseen set {dcr["share_closer_to_train"]:.3f} (95% CI {dcr["share_ci"][0]:.3f}-{dcr["share_ci"][1]:.3f}); exact matches {dcr["exact_matches"]}.</p>
<img src="{_dcr_figure(report)}">
<h2>Per class</h2>
{_table(per_class_rows, per_class_header)}
<h2>Samples</h2>
<img src="{image_data_uri(grid)}">
{real_section}
<p class="small">Inputs and versions are recorded in report.json beside this file.</p>
</body></html>"""
