"""Compare every number of two results.json files (p-values, accuracies, statistics, nulls)."""
import json, math, sys

SKIP = {"wall_s", "created", "versions", "run_config", "store"}

def flat(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in SKIP:
                continue
            yield from flat(v, f"{path}/{k}")
    elif isinstance(obj, list):
        if obj and all(isinstance(x, (int, float)) or x is None for x in obj):
            yield path, tuple(obj)
        else:
            for i, v in enumerate(obj):
                key = v.get("name") if isinstance(v, dict) and "name" in v else (v.get("layer") if isinstance(v, dict) and "layer" in v else i)
                if isinstance(v, dict) and "layer" in v and "name" in v:
                    key = f"{v['layer']}:{v['name']}"
                yield from flat(v, f"{path}[{key}]")
    elif isinstance(obj, bool) or obj is None or isinstance(obj, (int, float)):
        yield path, obj

a = dict(flat(json.load(open(sys.argv[1]))))
b = dict(flat(json.load(open(sys.argv[2]))))
def interesting(p):
    leaf = p.rsplit("/", 1)[-1]
    return any(s in leaf for s in ("p", "accuracy", "statistic", "pvalue", "null", "reject", "e0", "e1", "confusion", "n_selective", "auc", "q"))
common = [p for p in a if p in b]
diff = [p for p in common if a[p] != b[p]]
num = [p for p in common if interesting(p)]
print(f"numbers compared: {len(common)} common leaves ({len(num)} p-values/accuracies/statistics/decisions/nulls)")
print(f"differing: {len(diff)}")
for p in diff[:60]:
    print("  DIFF", p, str(a[p])[:80], "->", str(b[p])[:80])
only_a = [p for p in a if p not in b]; only_b = [p for p in b if p not in a]
print(f"only in baseline: {len(only_a)}; only in new: {len(only_b)}")
for p in only_a[:40]: print("  -", p)
for p in only_b[:40]: print("  +", p)
