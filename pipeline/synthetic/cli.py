"""``label-factory world``: write scenes of the synthetic world as a project, and optionally import them into
Label Studio the way ``label-factory import`` does (wired into pipeline/cli.py's optional sub-commands)."""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "world", help="synthetic scenes with exact truth, as a project (and a Label Studio project)",
        description="Render scenes of the seeded synthetic world (pipeline/synthetic: four classes among look-alikes "
                    "and clutter) into --out: images, the importer's manifest, truth.jsonl and a project YAML; with "
                    "--import, also a Label Studio project with one task per image.")
    p.add_argument("--out", "-o", required=True, help="project folder (scenes already there are kept)")
    p.add_argument("--scenes", type=int, default=100, help="scenes 0..N-1 (default 100)")
    p.add_argument("--seed", type=int, default=0, help="the world's seed (default 0)")
    p.add_argument("--size", default="1280x960", help="WIDTHxHEIGHT (default 1280x960)")
    p.add_argument("--name", default="synthetic-world", help="project name (YAML and Label Studio title)")
    p.add_argument("--import", dest="do_import", action="store_true",
                   help="import into Label Studio (--label-studio-url/--api-key or LABEL_STUDIO_URL/_API_KEY)")
    p.add_argument("--label-studio-url", default=None)
    p.add_argument("--api-key", default=None)
    p.set_defaults(func=cmd_world)


def cmd_world(args) -> int:
    from pipeline.synthetic.project import read_truth, to_label_studio, write_world
    from pipeline.synthetic.world import World
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"error: --size {args.size!r}: expected WIDTHxHEIGHT, e.g. 1280x960", file=sys.stderr)
        return 2
    if args.scenes < 1 or w < 64 or h < 64:
        print("error: --scenes must be at least 1 and --size at least 64x64", file=sys.stderr)
        return 2
    world = World(args.seed, size=(w, h))
    out = Path(args.out)
    manifest = write_world(world, range(args.scenes), out, name=args.name)
    truth = read_truth(out)
    boxes = sum(len(t["labels"]) for t in truth.values())
    print(f"{len(manifest)} scenes of world {args.seed} ({w}x{h}) in {out.resolve()}: {boxes} true boxes "
          f"({', '.join(world.classes)}); project {out / (args.name + '.yaml')}; truth {out / 'truth.jsonl'}")
    if args.do_import:
        from pipeline.importer.ls_project import LabelStudioError
        try:
            got = to_label_studio(out, args.label_studio_url, args.api_key, name=args.name)
        except LabelStudioError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"Label Studio project {got['project']}: {got['imported']} tasks imported, {got['already']} there "
              f"already ({got['note']})")
    return 0
