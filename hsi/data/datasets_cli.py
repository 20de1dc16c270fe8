"""``hsi datasets``: list, show, verify and download the registered datasets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hsi.data.cards import DatasetCard, get_card, list_datasets
from hsi.data.registry import (
    DATA_ENV,
    _form_txt,
    download_dataset,
    locate_files,
    resolve_root,
    verify_dataset,
)
from hsi.errors import DataError, HsiError

__all__ = ["datasets_main"]


def _shape_txt(card: DatasetCard) -> str:
    return f"{card.height}x{card.width}x{card.bands}"


def _cmd_list(args: argparse.Namespace) -> int:
    base = resolve_root(args.root)
    rows = [("name", "kind", "shape (HxWxB)", "classes", "found", "form")]
    for n in list_datasets():
        card = get_card(n)
        try:
            resolved = locate_files(card, base)
            found, form = "yes", resolved.form
            if card.kind == "restoration" and len(resolved.image_files) > 1:
                found = f"yes ({len(resolved.image_files)} scenes)"
        except DataError:
            found, form = "no", "-"
        classes = str(card.num_classes) if card.kind != "restoration" else "-"
        rows.append((n, card.kind, _shape_txt(card), classes, found, form))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"data root: {base}")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    card = get_card(args.name)
    base = resolve_root(args.root)
    print(f"{card.title} ({card.name})")
    print(f"  kind:        {card.kind}")
    print(f"  sensor:      {card.sensor}")
    print(f"  shape:       {_shape_txt(card)} (height x width x bands)")
    if card.spatial_resolution_m is not None:
        print(f"  resolution:  {card.spatial_resolution_m:g} m")
    if card.wavelength_range_nm is not None:
        lo, hi = card.wavelength_range_nm
        exact = "exact list in card" if card.wavelengths_nm else "band centres unknown"
        print(f"  wavelengths: {lo:g}-{hi:g} nm ({exact})")
    if card.has_labels:
        print(f"  classes ({card.num_classes}, {card.ignore_label} = unlabelled):")
        counts = card.class_counts or [None] * card.num_classes
        for i, (v, cname, cnt) in enumerate(
            zip(card.label_values, card.class_names, counts, strict=True), start=1
        ):
            file_id = f" (file label {v})" if v != i else ""
            print(f"    {i:>2} {cname}{file_id}" + (f": {cnt} px" if cnt is not None else ""))
    elif card.kind == "detection":
        print("  labels:      none per pixel (object boxes in COCO annotation files)")
        print(f"  object classes ({card.num_classes}): {', '.join(card.class_names)}")
    else:
        print("  labels:      none (clean cubes for restoration)")
        for split, names in card.test_scenes.items():
            print(f"  test_scenes {split}: {len(names)} files ({names[0]} ...)")
    print(f"  folder:      {base / card.folder}")
    for form in card.forms:
        if form.splits:
            print(f"  form {form.name} (format {form.format}):")
            for s in form.splits.values():
                count = f"{s.count} images" if s.count is not None else "images"
                print(f"    split {s.name}: {count}, {s.annotations} + {s.images}/")
            continue
        print(f"  form {form.name}: {_form_txt(form)}")
    for fname, spec in card.files.items():
        ck = spec.checksum
        print(f"  file {fname}: {f'{ck[0]} {ck[1]}' if ck else 'no checksum known'}")
        if spec.url:
            print(f"       url {spec.url}")
    for key in ("source_url", "licence", "citation", "notes"):
        value = getattr(card, key)
        if value:
            print(f"  {key}: {' '.join(str(value).split())}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    names = args.names or list_datasets()
    base = resolve_root(args.root)
    print(f"data root: {base}")
    bad = False
    for n in names:
        card = get_card(n)
        for chk in verify_dataset(card, base):
            bad |= chk.status == "mismatch"
            detail = ""
            if chk.status == "mismatch":
                detail = f" ({chk.algorithm}: expected {chk.expected}, got {chk.actual})"
            elif chk.status == "unverified":
                detail = f" (no checksum known; sha256 {chk.actual})"
            where = chk.path if chk.path is not None else base / card.folder / chk.file
            print(f"{card.name:<18} {chk.status:<10} {where}{detail}")
    return 1 if bad else 0


def _cmd_download(args: argparse.Namespace) -> int:
    paths = download_dataset(args.name, args.root, timeout=args.timeout)
    for p in paths:
        print(p)
    return 0


def datasets_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hsi datasets``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="hsi datasets",
        description=(
            "Registered datasets: list, show, verify and download them. Data root: --root, "
            f"else ${DATA_ENV}, else ~/.cache/hsi."
        ),
    )
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("list", help="table of datasets and whether their files are found")
    p.add_argument("--root", default=None, help="data root folder")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="show a dataset card")
    p.add_argument("name")
    p.add_argument("--root", default=None, help="data root folder")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("verify", help="check files against the cards' checksums")
    p.add_argument("names", nargs="*", metavar="NAME", help="datasets (default: all)")
    p.add_argument("--root", default=None, help="data root folder")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("download", help="download a dataset's files (where a URL is known)")
    p.add_argument("name")
    p.add_argument("--root", default=None, help="data root folder")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per connection")
    p.set_defaults(func=_cmd_download)

    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse reports usage errors by exiting
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except HsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(datasets_main())
