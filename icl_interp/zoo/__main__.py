"""``python -m icl_interp.zoo refresh``: record the checkout's zoo files in index.json;
``python -m icl_interp.zoo publish DIR``: prepare the folder to publish (see :mod:`icl_interp.core.zoo_store`)."""

import argparse
import sys

from ..core.zoo_store import ENV_URL, publish, refresh_manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m icl_interp.zoo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("refresh", help="record every model folder's files (SHA-256, size) in index.json")
    pub = sub.add_parser("publish", help="copy every recorded file to DIR/NAME/FILE with the index, hashes checked")
    pub.add_argument("out", help="an empty or new folder")
    args = p.parse_args(argv)
    try:
        if args.command == "refresh":
            print(f"recorded {len(refresh_manifest())} models in index.json")
        else:
            got = publish(args.out)
            print(f"wrote {got['models']} models ({got['files']} files, {got['bytes'] / 1e6:.1f} MB) to {args.out}: serve it over "
                  f"HTTP(S) and set {ENV_URL} to its address")
    except (ValueError, OSError) as e:
        print(f"python -m icl_interp.zoo {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
