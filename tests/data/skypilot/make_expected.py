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

# A pipeline's (or job group's) first document that names it and runs nothing: `name:`
# alone, or SkyPilot's job-group header (`execution: parallel`, `primary_tasks`, ...).
HEADER_KEYS = {"name", "execution", "primary_tasks", "termination_delay"}

# What a reader should know about a document, by (file, document index).
NOTES = {
    ("examples__elastic_training__job.yaml", 0):
        "job-group header, not a task: execution: parallel, primary_tasks: [controller]",
    ("examples__elastic_training__job.yaml", 1):
        "cpus written as the integer 1; resources.job_recovery {strategy: DYNAMIC_NODE_SET, "
        "min_nodes: 1}; workdir is a map {url, ref}",
    ("examples__elastic_training__job.yaml", 2):
        "cpus: 0.1 and memory: 0.1 are fractional numbers, not strings; num_nodes 1500; "
        "job_recovery min_nodes 1000",
    ("examples__serve__qwen-7b.yaml", 0):
        "SkyServe v2 spec: top-level model: key, no run/setup; service.autoscaling.metrics",
    ("examples__serve__external-lb__llm.yaml", 0):
        "ordered entries pin regions us-east-2, ap-northeast-1, eu-central-1 (no single region); "
        "service.external_load_balancers carry their own resources (cloud/region), not the task's",
    ("examples__per_region_images.yaml", 0):
        "image_id is a map region -> image (us-east-1, us-west-2), not a string",
    ("examples__admin_policy__task.yaml", 0):
        "cpus written as the integer 2 (exactly 2); resources.labels",
    ("examples__batch_inference__worker.yaml", 0):
        "accelerators set without counts (count 1 each); any_of only varies use_spot; "
        "file_mounts sources are env templates ($DATA_BUCKET, $OUTPUT_BUCKET, $DATA_GROUP_METADATA)",
    ("llm__deepseek-r1__deepseek-r1-671B.yaml", 0):
        "any_of only varies use_spot (true, false), so use_spot is not fixed",
    ("llm__llama-4__llama4.yaml", 0):
        "flow map written with spaces inside the braces: { H100:8, H100:12, ... }",
    ("llm__gemma__serve.yaml", 0): "accelerators set without counts (count 1 each)",
    ("llm__kimi-k2__kimi-k2.sky.yaml", 0):
        "secrets: {HF_TOKEN: null}; image_id docker:...; service readiness_probe uses $MODEL_NAME",
    ("llm__llama-3_1-finetuning__lora.yaml", 0):
        "file_mounts /output bucket name is an env template ($CHECKPOINT_BUCKET_NAME)",
    ("examples__coreweave_infiniband__coreweave_nccl_test.yaml", 0):
        "image_id without the docker: prefix; infra: k8s; file has no final newline",
    ("examples__amd__amd_smoke_test.yaml", 0): "AMD GPU (MI300); cloud: kubernetes",
    ("examples__tpu__tpu_node_mnist.yaml", 0):
        "TPU node with a host instance_type n1-highmem-8; accelerator_args.tpu_vm: False",
}

out = []
for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__) or ".", "*.yaml"))):
    docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
    name = os.path.basename(path)
    entry = {"file": name, "documents": []}
    for i, d in enumerate(docs):
        if i == 0 and len(docs) > 1 and "name" in d and set(d) <= HEADER_KEYS:
            doc = {"name": d["name"], "header_only": True}
        else:
            doc = document(d)
        if (name, i) in NOTES:
            doc["note"] = NOTES[(name, i)]
        entry["documents"].append(doc)
    out.append(entry)
json.dump(out, open(os.path.join(os.path.dirname(__file__) or ".", "expected.json"), "w"), indent=1)
print(len(out), "files")
