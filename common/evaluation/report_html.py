"""evaluation.html: utility and fidelity tables, plots and samples in one self-contained page."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np

from cxr_fedsynth.common.evaluation.html_images import figure_data_uri, image_data_uri
from cxr_fedsynth.common.publish.sample_grid import grid_image


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


REALISM_ROWS = {
    "frechet_distance": "Frechet distance (lower is better)",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
    "linear_probe_auroc": "linear-probe two-sample AUROC (0.5 = indistinguishable)",
    "cnn_two_sample_auroc": "trained-CNN two-sample AUROC (0.5 = indistinguishable)",
}


def _mean_and_spread(mean: dict, draws: list[dict], key: str) -> str:
    """The mean over the draws and, where the figure was taken on more than one, their standard deviation."""
    if len(draws) < 2 or key not in draws[0]:
        return _fmt(mean[key])
    return f"{_fmt(mean[key])} +- {_fmt(float(np.std([draw[key] for draw in draws], ddof=1)))}"


def _realism_section(realism: dict | None) -> str:
    if not realism:
        return "<h2>Realism</h2><p>Not measured (give cxr-evaluate --encoder).</p>"
    other, draws = realism.get("other_source_real"), realism["draws"]
    rows = "".join(
        f"<tr><td>{label}</td><td>{_mean_and_spread(realism['synthetic'], draws['synthetic'], key)}</td>"
        f"<td>{_fmt(realism['real_control'][key])}</td>"
        + (f"<td>{_mean_and_spread(other, draws['other_source_real'], key)}</td>" if other else "")
        + "</tr>"
        for key, label in REALISM_ROWS.items()
    )
    other_head = "<th>public real X-rays vs real (another source)</th>" if other else ""
    other_note = (
        f" The last column compares half A with {realism['images']['other_source']} real public images of other patients"
        " from another source: what real X-rays of another population score."
        if other
        else ""
    )
    encoder = realism["encoder"]
    return f"""<h2>Realism (features of a self-supervised encoder trained on public images only)</h2>
<p>Real held-out half A ({realism["images"]["real_a"]} images) against {realism["images"]["compared"]} synthetic images drawn with
the other half's class mix ({len(draws["synthetic"])} draws: their mean +- standard deviation; the CNN test on the first draw), and against that other half B of real patients (the control: what a perfect generator scores).{other_note}
Encoder sha256 {html.escape(encoder["sha256"][:16])}..., {encoder["recipe"]["steps"]} SimCLR steps at {encoder["recipe"]["image_size"]} px.</p>
<table><tr><th>figure</th><th>synthetic vs real</th><th>real vs real (control)</th>{other_head}</tr>{rows}</table>"""


def render_evaluation(
    report: dict, synthetic: np.ndarray, labels: np.ndarray, *, real: tuple[np.ndarray, np.ndarray] | None = None
) -> str:
    """The page; ``real`` (held-out images and their labels) adds a grid of real images beside the synthetic one."""
    classes = report["classes"]
    head = (
        "<tr><th>classifier</th><th>macro AUROC</th><th>accuracy</th><th>macro F1</th><th>pneumonia vs normal AUROC</th>"
        + "".join(f"<th>{html.escape(c)} AUROC (95% CI)</th>" for c in classes)
        + "</tr>"
    )
    rows = ""
    for name, m in report["classifiers"].items():
        pn = m.get("pneumonia_vs_normal", {}).get("auroc")
        cells = [name, _fmt(m["macro_auroc"]), _fmt(m["accuracy"]), _fmt(m["macro_f1"]), _fmt(pn)]
        cells += [
            f"{_fmt(m['per_class'][c]['auroc'])} ({_fmt(m['per_class'][c]['auroc_ci'][0])}-{_fmt(m['per_class'][c]['auroc_ci'][1])})"
            for c in classes
        ]
        rows += "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
    fig, axes = plt.subplots(1, len(classes), figsize=(3.2 * len(classes), 2.6), squeeze=False)
    for ax, name in zip(axes[0], classes):
        h = report["intensity_histograms"][name]
        x = np.linspace(0, 255, len(h["synthetic"]))
        ax.plot(x, h["synthetic"], label="synthetic")
        if h["real"]:
            ax.plot(x, h["real"], label="real (test)")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("pixel value")
    axes[0][0].legend(fontsize=7)
    fid = report["fidelity"]["overall"]
    div_rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{_fmt(v['synthetic'])}</td><td>{_fmt(v['real'])}</td><td>{_fmt(report['fidelity']['per_class'].get(c, {}).get('fid'))}</td></tr>"
        for c, v in report["within_class_diversity"].items()
    )
    grid = grid_image([synthetic[labels == i][:8] for i in range(len(classes))], classes, title="Synthetic samples")
    real_grid = ""
    if real is not None:
        images, real_labels = real
        shown = grid_image([images[real_labels == i][:8] for i in range(len(classes))], classes, title="Real held-out")
        real_grid = f'<img alt="real held-out images" src="{image_data_uri(shown)}">'

    private = "" if report["generator"]["private"] else "<p><b>NOT PRIVATE generator (trained without DP).</b></p>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation: {html.escape(str(report["generator"]["run_name"]))}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body>
<h1>Is the synthetic data worth using?</h1>{private}
<p><b>{html.escape(report["baseline_verdict"])}</b></p>
<p>Real training set: {report["data"]["train_images"]} images of {report["data"]["train_patients"]} patients; real test set: {report["data"]["test_images"]} images of {report["data"]["test_patients"]} other patients; {report["data"]["synthetic_per_class"]} synthetic images per class.</p>
<h2>Utility on real test patients</h2><table>{head}{rows}</table>
{_realism_section(report.get("realism"))}
<h2>Fidelity (features of a classifier trained here on real images)</h2>
<p>Frechet distance {fid["fid"]:.3f}, KID {fid["kid_mean"]:.4f} ± {fid["kid_std"]:.4f}; precision {fid["precision"]:.3f}, recall {fid["recall"]:.3f}, density {fid["density"]:.3f}, coverage {fid["coverage"]:.3f};
a classifier trained to tell real from synthetic images scores accuracy {report["classifier_two_sample_accuracy"]:.3f}, AUROC {report["classifier_two_sample_auroc"]:.3f} on held-out images (0.5 = indistinguishable, 1.0 = every image told apart).</p>
<table><tr><th>class</th><th>within-class diversity, synthetic</th><th>within-class diversity, real</th><th>Frechet distance</th></tr>{div_rows}</table>
<h2>Pixel-intensity histograms</h2><img src="{figure_data_uri(fig)}">
<h2>Samples</h2><img src="{image_data_uri(grid)}">{real_grid}
</body></html>"""
