"""Refresh ``prefect_runway/models/runway_api.json`` from the installed ``runwayml`` SDK.

The fields of every model come from the SDK's TypedDicts (Runway's OpenAPI spec); the
``limits`` of each model (ranges Runway states in prose only: durations, image counts) are
kept from the file as it is. Review the diff before committing; the conformance test
(``tests/unit/test_catalogue_spec.py``) says what changed when the SDK changes.

Usage::

    pip install runwayml==<version>
    python scripts/runway_catalogue.py [--checked YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from prefect_runway.emulator import sdk_spec

DATA = Path(__file__).resolve().parents[1] / "prefect_runway" / "models" / "runway_api.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checked", default=date.today().isoformat())
    args = parser.parse_args()
    old = json.loads(DATA.read_text(encoding="utf-8")) if DATA.exists() else {}
    version = sdk_spec.sdk_version()
    endpoints: dict[str, dict[str, object]] = {}
    for endpoint, models in sdk_spec.spec().items():
        endpoints[endpoint] = {}
        for model, found in models.items():
            kept = old.get("endpoints", {}).get(endpoint, {}).get(model, {})
            entry = {"class": found["class"], "fields": found["fields"]}
            if kept.get("limits"):
                entry["limits"] = kept["limits"]
            endpoints[endpoint][model] = entry
    data = {
        "sdk": f"runwayml {version}",
        "checked": args.checked,
        "sources": old.get("sources") or [
            f"runwayml {version} types/{{{','.join(sdk_spec.ENDPOINTS)}}}_create_params.py "
            "(generated from Runway's OpenAPI spec)",
        ],
        "endpoints": endpoints,
    }
    DATA.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(DATA)


if __name__ == "__main__":
    main()
