"""pytest plugin used only by mutation testing (setup.cfg's [mutmut] section loads it with -p).

mutmut passes each mutant's tests as an unordered set and stops at the first failure (-x), so
running the fastest tests first kills most mutants in a fraction of the time. The durations come
from mutmut's own clean run (mutants/mutmut-stats.json, in the working directory of the run).
"""

import json
from pathlib import Path


def pytest_collection_modifyitems(session, config, items):
    stats = Path("mutmut-stats.json")
    if not stats.exists():
        return
    durations = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
