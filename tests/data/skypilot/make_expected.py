#!/usr/bin/env python3
"""Writes expected.json: what each SkyPilot task file here says, read with PyYAML (the parser
SkyPilot itself uses) and SkyPilot's documented rules (docs/source/reference/yaml-spec.rst),
independently of hylab's reader. Run it again after adding a file."""
import glob, json, os, yaml

def pairs(acc):
    if acc is None:
        return []
    if isinstance(acc, (int, float)):
        return [["", int(acc)]]
    if isinstance(acc, str):
        name, _, count = acc.partition(":")
        if name.strip().isdigit() and not count:
            return [["", int(name)]]
        return [[name.strip(), int(count) if count else 1]]
    if isinstance(acc, dict):  # {A100: 8} or {H200:8, H100:8} (keys without values)
        out = []
        for k, v in acc.items():
            if v is None:
                out += pairs(str(k))
            else:
                out.append([str(k), int(v)])
        return out
    if isinstance(acc, (list, set)):
        return [p for a in acc for p in pairs(a)]
    raise ValueError(acc)

def kind(res):
    if "any_of" in res: return "any_of"
    if "ordered" in res: return "ordered"
    acc = res.get("accelerators")
    if acc is None: return "none"
    if isinstance(acc, list): return "list"
    if isinstance(acc, dict) and len(acc) > 1: return "set"
    return "single"

def place(res):
    cloud, region = res.get("cloud"), res.get("region")
    if res.get("infra"):
        parts = res["infra"].split("/")
        cloud = "kubernetes" if parts[0] == "k8s" else parts[0]
        region = parts[1] if len(parts) > 1 and parts[1] != "*" else None
    return (cloud.lower() if cloud else None), region

def document(doc):
    res = doc.get("resources") or {}
    entries = res.get("any_of") or res.get("ordered") or []
    alts = []
    if entries:
        for e in entries:
            alts += pairs(e["accelerators"]) if "accelerators" in e else pairs(res.get("accelerators"))
    else:
        alts = pairs(res.get("accelerators"))
    spot = res.get("use_spot")
    if spot is None and entries:
        values = {e.get("use_spot") for e in entries}
        spot = values.pop() if len(values) == 1 else None
    cloud, region = place(res)
    # An entry's pin constrains the job only when every entry pins (one unpinned
    # alternative may run anywhere).
    if entries:
        pins = [place(e) for e in entries]
        if all(c for c, _ in pins) and not cloud:
            cloud = pins[0][0] if len({c for c, _ in pins}) == 1 else None
        if all(r for _, r in pins) and not region:
            region = pins[0][1] if len({r for _, r in pins}) == 1 else None
    return {"name": doc.get("name"), "num_nodes": doc.get("num_nodes", 1),
            "accelerators": [list(p) for p in dict.fromkeys(map(tuple, alts))],
            "alternatives_kind": kind(res), "use_spot": spot, "cloud": cloud, "region": region,
            "service": "service" in doc,
            "cpus": str(res["cpus"]) if "cpus" in res else None,
            "memory": str(res["memory"]) if "memory" in res else None}

out = []
for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__) or ".", "*.yaml"))):
    docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    entry = {"file": os.path.basename(path), "documents": []}
    for i, d in enumerate(docs):
        if i == 0 and len(docs) > 1 and set(d) == {"name"}:
            entry["documents"].append({"name": d["name"], "header_only": True})
        else:
            entry["documents"].append(document(d))
    out.append(entry)
json.dump(out, open(os.path.join(os.path.dirname(__file__) or ".", "expected.json"), "w"), indent=1)
print(len(out), "files")
