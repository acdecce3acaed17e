"""``python main.py pacs query|verify NODE``: the PACS from the command line.

``query`` searches studies (C-FIND Study Root, or QIDO-RS) and prints one line per study, or
with ``--json`` one document ``{"studies": [...]}``; ``verify`` sends a C-ECHO or a QIDO-RS
ping. ``NODE`` is a configured node's name, ``AET@HOST:PORT`` or an ``http(s)://`` DICOMweb URL.
Exit status 0 on success, 2 with one line on stderr when the PACS cannot be used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from pacs.client import PacsClient, open_client
from pacs.errors import PacsError
from pacs.nodes import load_settings, parse_node
from pacs.records import StudyQuery, parse_date_range


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """``--aet`` and ``--timeout``, which every command speaking to a PACS takes."""
    parser.add_argument("--aet", help="our calling AE title for AET@HOST:PORT nodes (default: LIGHTBOX)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for each answer (default: the node's, 10)")


def client_for(text: str, args: argparse.Namespace) -> PacsClient:
    """The client of the node ``text`` names, with the command's ``--aet`` and ``--timeout``."""
    settings = load_settings()
    node = parse_node(text, settings, args.aet)
    if args.timeout:
        node = dataclasses.replace(node, timeout=args.timeout)
    return open_client(node, settings.move_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py pacs", description="Query and check a PACS.")
    commands = parser.add_subparsers(dest="action", required=True)
    query = commands.add_parser("query", help="search studies")
    query.add_argument("node", metavar="NODE", help="a configured node, AET@HOST:PORT or an http(s):// URL")
    query.add_argument("--patient-id", default="")
    query.add_argument("--patient-name", default="", help="matches names starting with it, unless it has * or ?")
    query.add_argument("--date", type=date_range, default="", metavar="FROM-TO",
                       help="YYYYMMDD-YYYYMMDD; either end may be left open")
    query.add_argument("--modality", default="")
    query.add_argument("--accession", default="")
    query.add_argument("--description", default="", help="matches anywhere in the study description")
    query.add_argument("--json", action="store_true", help='one JSON document {"studies": [...]}')
    add_node_options(query)
    verify = commands.add_parser("verify", help="C-ECHO or QIDO-RS ping")
    verify.add_argument("node", metavar="NODE")
    add_node_options(verify)
    return parser


def date_range(text: str) -> str:
    """``--date`` as a DICOM range; empty (argparse's default passes through here too) for none."""
    if not text:
        return ""
    try:
        return parse_date_range(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    client = client_for(args.node, args)
    if args.action == "verify":
        print(client.verify())
        return 0
    query = StudyQuery(patient_id=args.patient_id, patient_name=args.patient_name, date_range=args.date,
                       modality=args.modality, accession=args.accession, description=args.description)
    studies = client.find_studies(query)
    if args.json:
        print(json.dumps({"studies": [study.as_json() for study in studies]}))
        return 0
    for study in studies:
        count = "?" if study.instances is None else study.instances
        print(f"{study.study_date or '-':8}  {study.patient_id or '-'}  {study.patient_name or '-'}  "
              f"{'/'.join(study.modalities) or '-'}  {count} images  {study.description or '-'}  "
              f"{study.study_instance_uid}")
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}", file=sys.stderr)
    return 0


def pacs_command(argv: Sequence[str]) -> int:
    """Run ``pacs query`` or ``pacs verify``; one line on stderr and exit 2 when the PACS cannot be used."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PacsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
