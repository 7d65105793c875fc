"""Render a generator's model card (a dict, also stored as JSON) as Markdown a person can read."""

from __future__ import annotations


def privacy_statement(card: dict) -> str:
    """The guarantee in plain words (or NOT PRIVATE)."""
    if not card["private"]:
        return (
            "NOT PRIVATE. This generator was trained WITHOUT differential privacy (a baseline site's policy). It may reproduce "
            "training images. Use it only as a baseline or control, never share it outside the sites' own governance."
        )
    sites = card.get("sites", [])
    worst = max((s["epsilon"] for s in sites), default=0.0)
    delta = card["privacy"]["delta"]
    return (
        f"Differentially private at {'image' if card['privacy']['unit'].startswith('image') else 'patient'} level: "
        f"for every participating site, adding or removing all images of one "
        f"{'image' if card['privacy']['unit'].startswith('image') else 'patient'} changes the probability of any published output by at most a factor e^epsilon "
        f"(plus delta), with epsilon <= {worst:.3g} and delta = {delta:g} per site (accountant: "
        f"{card['privacy']['accountant']}). The generator never saw real images; it was trained only against the DP-protected "
        f"discriminator{' and the noisy class feature means the sites released once' if card['privacy'].get('feature_release') else ''}, "
        "so it inherits the guarantee by post-processing."
        + (
            " The discriminator published for guided sampling is that DP-protected discriminator (the average of the sites' "
            "DP-SGD updates), covered by the same guarantee."
            if "discriminator_sha256" in card.get("sampling", {})
            else ""
        )
    )


def render_model_card(card: dict) -> str:
    """Markdown model card."""
    arch = card["architecture"]
    lines = [
        f"# Model card: {card['run_name']}",
        "",
        "Synthetic chest X-ray generator published by cxr-fedsynth. Every image it produces is SYNTHETIC.",
        "",
        "## Privacy",
        "",
        privacy_statement(card),
        "",
    ]
    if card["private"]:
        p = card["privacy"]
        lines += [
            f"- privacy unit: {p['unit']}",
            f"- accountant: {p['accountant']}; target epsilon per site {p['target_epsilon']}, delta {p['delta']}",
            f"- clip norm (max per-patient gradient norm): {p['max_grad_norm']}",
            *_release_lines(p.get("feature_release")),
            "",
        ]
    lines += [
        "## Sites",
        "",
        "| site | rounds | DP steps | epsilon (approved, upper bound) | delta | privacy unit |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for s in card.get("sites", []):
        lines.append(
            f"| {s['name']} | {s['rounds']} | {s['steps']} | "
            f"{'NOT PRIVATE' if s['epsilon'] is None else format(s['epsilon'], '.3g')} | {s.get('delta') or '-'} | "
            f"{s.get('privacy_unit', 'patient')} |"
        )
    lines += [
        "",
        "## Model",
        "",
        f"- classes ({len(card['classes'])}, condition set `{card['condition_set']}`): {', '.join(card['classes'])}",
        _image_size_line(card),
        f"- architecture: class-conditional DCGAN generator (width {arch['g_width']}); discriminator with projection "
        f"and auxiliary-classifier heads (width {arch['d_width']}), GroupNorm, global pooling",
        f"- rounds: {card['rounds_completed']} of {card['rounds_planned']} planned; loss {card['training']['loss']}",
        f"- weights: `generator.safetensors` (SHA-256 `{card.get('weights_sha256', '')[:16]}...`); load with "
        "`cxr_fedsynth.common.publish.artifacts.load_generator` or sample with `cxr-generate`",
        *_member_lines(card.get("members", [])),
        _sampling_line(card.get("sampling", {})),
        "",
        "## Data",
        "",
        f"- {card['data']['description']}",
        *_data_lines(card["data"]),
        *_public_lines(card.get("public_pretraining")),
        "",
        "![samples](samples.png)",
        "",
    ]
    return "\n".join(lines)


_SHRINKAGE_WORDS = {
    "generator": "each towards G's own class mean",
    "pooled": "per block of D features, towards the mean over all classes; pixel block as released",
}


def published_image_size(card: dict) -> int:
    """The side of a card's published images: G's size times its super-resolution factor."""
    factor = card.get("super_resolution", {}).get("recipe", {}).get("factor", 1)
    return int(card["architecture"]["image_size"]) * int(factor)


def _image_size_line(card: dict) -> str:
    arch, entry, size = card["architecture"], card.get("super_resolution"), published_image_size(card)
    line = f"- image size: {size} x {size} px, grayscale, latent size {arch['latent_dim']}"
    if entry is None:
        return line
    recipe, trained_on = entry["recipe"], entry.get("trained_on", {})
    return line + (
        f"; G draws {arch['image_size']} px and a super-resolution network x{recipe['factor']} "
        f"(`super-resolution.safetensors`, SHA-256 `{entry['sha256'][:16]}...`) enlarges every image: trained for "
        f"{recipe['steps']} steps on {trained_on.get('images', '?')} public images ({trained_on.get('name', 'public set')}) "
        f"at {size} px, never on a site's image (post-processing, no privacy cost)"
    )


def _member_lines(members: list[dict]) -> list[str]:
    if not members:
        return []
    files = ", ".join(f"`{m['file']}` (SHA-256 `{m['sha256'][:16]}...`)" for m in members)
    return [
        f"- generator members: {len(members) + 1}; besides the run's own, {files}, each trained after the last round from the "
        "round-0 weights against the final DP discriminator and the released class targets (post-processing); samples come "
        "in equal shares from every member"
    ]


def _sampling_line(sampling: dict) -> str:
    if sampling.get("keep", 1.0) >= 1:
        return "- sampling: plain (one latent draw per image)"
    return (
        f"- sampling: guided; of every {1 / sampling['keep']:.3g} candidates G draws, the run's DP discriminator "
        f"(`discriminator.safetensors`, SHA-256 `{sampling['discriminator_sha256'][:16]}...`; the average of the sites' DP-SGD updates, "
        "so publishing it is post-processing) keeps the one it rates most real and most like the asked class"
    )


def _release_lines(release: dict | None) -> list[str]:
    if not release:
        return []
    return [
        f"- feature release (once per site, composed with the DP-SGD rounds in epsilon above): Gaussian mechanism on the "
        f"per-class sums of {release['embedding_dim']}-d unit-norm embeddings ({_embedding_words(release)}){_count_words(release)}, sensitivity 1 per patient, "
        f"noise multiplier {release['noise_multiplier']:.3f} (epsilon {release['epsilon_of_release_alone']} alone), "
        f"{release['sites']} site(s); G matches the class means of: {', '.join(release['matched_classes']) or 'none'}",
        *([_class_gap_words(release)] if release.get("class_gap_scale", 1.0) != 1.0 else []),
        *(
            [
                f"- noise-aware shrinkage of the released class means ({_SHRINKAGE_WORDS[release.get('shrinkage') or 'generator']}); "
                "share of each deviation kept: " + ", ".join(f"{k} {v}" for k, v in release["shrinkage_kept"].items())
            ]
            if release.get("shrinkage_kept")
            else []
        ),
    ]


def _class_gap_words(release: dict) -> str:
    where = "the pixel block" if release.get("class_gap_block") == "pixels" else "every block"
    share = f"{release['class_gap_signal_share']:.0%} of the released class gaps' energy in {where} is signal"
    if release.get("class_gap_widened"):
        return (
            f"- G matches the class means with their gaps from the classes' pooled mean widened x {release['class_gap_scale']:g} "
            f"({_cap_words(release)}{share}; post-processing, no privacy cost)"
        )
    return f"- G matches the class means as released: {share}, under the {release['class_gap_min_signal_share']:.0%} needed to widen the gaps x {release['class_gap_scale']:g}"


def _cap_words(release: dict) -> str:
    if (
        release.get("class_gap_cap") != "median"
    ):  # absent from cards written before the cap existed: every class x scale
        return ""
    factors = ", ".join(
        f"{name} x {factor:.2f}" for name, factor in release["class_gap_factors"].items() if factor != 1.0
    )
    return f"capped: no class moves further than the median class gap allows, {factors}; "


def _count_words(release: dict) -> str:
    share = release.get("count_share")  # absent from cards written before the count's share was set (an equal split)
    return f" and the patient count ({share:.1%} of each row's norm)" if share else ""


def _embedding_words(release: dict) -> str:
    grid = release.get("pixel_grid") or 0
    pixels = (
        f"the images' {grid} x {grid} cell statistics ({release['pixel_share']:.0%} of the norm) and " if grid else ""
    )
    return f"{pixels}public-pretrained D features"


def _data_lines(data: dict) -> list[str]:
    """Sites send no counts: the card shows the DP estimates of the feature release, or says there are none."""
    if data.get("class_patients"):
        per_class = ", ".join(f"{k} {v}" for k, v in data["class_patients"].items())
        return [f"- training patients, about {data['patients']} ({data['patients_source']}): {per_class}"]
    return [f"- training patients: {data.get('patients_source', 'not released by the sites')}"]


def _public_lines(public: dict | None) -> list[str]:
    if not public:
        return ["- public pretraining: none"]
    classes = ", ".join(f"{k} {v}" for k, v in public["class_images"].items())
    return [
        f"- public pretraining (no privacy cost, other patients): {public['name']}, {public['images']} images of "
        f"{public['patients']} patients, {public['steps']} non-private G/D steps on the server before round 1",
        f"- per-class public images: {classes}",
    ]
