#!/usr/bin/env python3
"""moto_server for paranix's integration tests, with extensions to moto: faithful models of AWS
behaviour moto lacks.

    python paranix_moto.py --host 127.0.0.1 --port N [--import-snapshot-describes 2]
                           [--import-snapshot-seconds S]

Runs moto's own server (moto 5.2.5, pinned in requirements.txt: the werkzeug app
`DomainDispatcherApplication` behind `werkzeug.serving.run_simple`, exactly like `moto_server`)
after patching moto where, for the calls paranix makes, moto 5.2.5 lacks the call or answers
differently from AWS. Each extension below says what moto does and what AWS does; nothing here
fakes success for something moto already models. Extension state lives on moto's backends (or is
cleared alongside them), so `POST /moto-api/reset` resets it too.

EC2
  1. ImportSnapshot / DescribeImportSnapshotTasks (moto: NotImplementedError, HTTP 500).
     ImportSnapshot checks what AWS checks before it accepts a task: the S3 object exists in moto's
     S3 (else `InvalidParameter: User does not have access to the S3 object (bucket/key).`), in the
     request's region, and the service role (`RoleName`, default `vmimport`) exists in moto's IAM
     and trusts vmie.amazonaws.com (else `InvalidParameter: The service role vmimport provided
     does not exist or does not have sufficient permissions`). It returns a task `import-snap-` +
     17 hex digits, status `active`, message `pending`. The same ClientToken returns the same task
     (different arguments: IdempotentParameterMismatch). Tags from TagSpecifications (resource type
     `import-snapshot-task`) go on the task only; as in AWS the snapshot does not inherit them.
     DescribeImportSnapshotTasks (ImportTaskIds, Filters `tag:K`/`tag-key`, MaxResults/NextToken)
     reports a task `completed` from its Nth describe on (N = --import-snapshot-describes, default
     2, so the first describe still says `active`; 0 completes it on the first describe) or once
     --import-snapshot-seconds have passed. On completion it creates a real snapshot in moto's EC2
     backend (DescribeSnapshots, RegisterImage and DeleteSnapshot work with it): VolumeSize =
     ceil(object size / GiB) (at least 1), VolumeId `vol-ffffffff`, description `Created by
     AWS-VMImport service for import-snap-...`, encrypted if `Encrypted` was set, as AWS does. The
     task then reports SnapshotId, Status `completed` and DiskImageSize, which AWS fills with the
     image size in bytes (the API reference says GiB; real answers are bytes, e.g. 705638400.0).
  2. GetConsoleOutput (moto: a fixed 2006 Xen boot log). Returns, base64-encoded as AWS does, a
     NixOS boot tail ending in exactly what paranix's `paranix-print-host-key` unit
     (common/default.nix) prints at every boot, in cloud-init's format (which nixpkgs' own
     print-host-key also uses since PR #442408):
         -----BEGIN SSH HOST KEY FINGERPRINTS-----
         256 SHA256:... root@ip-10-0-0-5 (ED25519)        (`ssh-keygen -l -f <key>.pub`)
         -----END SSH HOST KEY FINGERPRINTS-----
         -----BEGIN SSH HOST KEY KEYS-----
         ssh-ed25519 AAAA... root@ip-10-0-0-5            (the .pub file)
         -----END SSH HOST KEY KEYS-----
     (tests/it/nix_modules.rs runs the unit's script and compares). Lines end in CRLF, as a serial
     console's do. The key is a real ed25519 key made per instance with `cryptography` (a moto
     dependency) unless a test set one through the side channel below. `Latest=true` is refused
     on Xen instance types (t2, m4, c4, ...): the API reference says the latest output "is
     supported on instance types that use the Nitro hypervisor"; the error code is not documented
     and is modelled as EC2's `UnsupportedOperation`.
  3. RegisterImage / DescribeImages (moto: keeps only Name and Description and invents a 15 GiB
     /dev/sda1 "standard" mapping backed by a new snapshot). Registered images keep what AWS keeps:
     BlockDeviceMappings (snapshot must exist and be completed; VolumeSize defaults to, and may not
     be below, the snapshot size; DeleteOnTermination defaults to true; Encrypted follows the
     snapshot), RootDeviceName, RootDeviceType `ebs`, Architecture (default i386),
     VirtualizationType (default paravirtual), EnaSupport, SriovNetSupport, BootMode, ImdsSupport,
     TpmSupport, tags from TagSpecifications (only `image` is allowed). Names are unique per
     account (InvalidAMIName.Duplicate). A snapshot in use by an image cannot be deleted.
  4. ModifyImageAttribute Description (moto: accepted and ignored). Sets the description.
  5. RunInstances (moto: ignores ClientToken, and ignores the image's block device mappings).
     The same ClientToken returns the original reservation (different arguments:
     IdempotentParameterMismatch). For images registered through (3), the instance's volumes are
     the image's mappings overridden per device by the request's (NoDevice drops one), so an
     instance's root volume comes from the image's snapshot, like in AWS.
EBS direct APIs
  6. StartSnapshot (moto: BlockSize 512, Encrypted ignored, the EC2 snapshot `completed` at once,
     and a phantom volume left in DescribeVolumes). BlockSize is 524288 bytes, `Encrypted` makes an
     encrypted snapshot (the account's default EBS key), the snapshot is `pending` until
     CompleteSnapshot, and its VolumeId is `vol-ffffffff` with no volume behind it, as in AWS.
S3
  7. GetBucketVersioning (moto: root element `<GetBucketVersioningResponse>`, which the Rust SDK
     rejects). Answers `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`
     with `<Status>` only once versioning was ever set.
  8. Conditional writes (moto checks If-Match / If-None-Match and then writes, without a lock, so
     concurrent writers of bodies of a few hundred KiB could all "win"). PutObject, CopyObject,
     DeleteObject and the multipart POSTs run under one lock, making check-and-write atomic.

Control endpoints (not AWS; JSON in and out):
  GET  /paranix/health                 -> {"status": "ok", "pid": N}: up, extended, and which process.
  POST /paranix/console-host-key       {"instance_id": "i-...", "public_key": "ssh-ed25519 AAAA... c"}
       instance_id "*" sets the key for every instance without its own; instead of instance_id,
       {"tag": {"Key": "Name", "Value": "web"}} matches instances by a tag (checked at read time).
  GET  /paranix/requests               -> {"count": N}: AWS requests served since start or reset.
  POST /moto-api/reset                 moto's reset; also clears the state above.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Callable

# Settings of the ImportSnapshot model, set from the command line in main().
IMPORT_SNAPSHOT_DESCRIBES = 2
IMPORT_SNAPSHOT_SECONDS: float | None = None

GIB = 1024**3
EBS_BLOCK_SIZE = 524288  # bytes, what AWS's StartSnapshot reports
AWS_IMPORTED_VOLUME_ID = "vol-ffffffff"  # the VolumeId AWS shows for imported/EBS-direct snapshots

# Extension state that does not live on a moto backend; cleared on /moto-api/reset.
_lock = threading.RLock()
_console_keys: dict[str, str] = {}  # instance id (or "*") -> public key line, set by tests
_console_tag_keys: list[tuple[str, str, str]] = []  # (tag key, tag value, public key line)
_generated_keys: dict[str, str] = {}  # instance id -> generated public key line
_request_count = 0


def _state(backend: Any, name: str) -> dict[str, Any]:
    """A dict stored on a moto backend: moto's reset replaces a backend's __dict__, clearing it."""
    with _lock:
        return backend.__dict__.setdefault(f"_paranix_{name}", {})


def _fingerprint(querystring: dict[str, Any]) -> str:
    """The request's arguments, for idempotency checks (AWS compares the arguments too)."""
    skip = {"Action", "Version", "ClientToken", "DryRun"}
    return json.dumps({k: v for k, v in querystring.items() if k not in skip}, sort_keys=True, default=str)


def _ec2_error(code: str, message: str) -> Exception:
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


def _idempotent_mismatch() -> Exception:
    return _ec2_error(
        "IdempotentParameterMismatch",
        "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
    )


# ------------------------------------------------------------------------------------------------
# 1. EC2 ImportSnapshot / DescribeImportSnapshotTasks
# ------------------------------------------------------------------------------------------------


class ImportSnapshotTask:
    """One import-snapshot task; `detail()` reports it the way AWS does at each stage."""

    def __init__(self, task_id: str, description: str | None, fmt: str, bucket: str, key: str,
                 size: int, encrypted: bool, tags: dict[str, str]):
        self.id = task_id
        self.description = description
        self.format = fmt
        self.bucket = bucket
        self.key = key
        self.size = size
        self.encrypted = encrypted
        self.tags = tags
        self.created = time.monotonic()
        self.describes = 0
        self.snapshot: Any = None

    def maybe_complete(self, ec2_backend: Any) -> None:
        """Called once per describe that returns this task."""
        if self.snapshot is not None:
            return
        self.describes += 1
        done = self.describes >= IMPORT_SNAPSHOT_DESCRIBES
        if IMPORT_SNAPSHOT_SECONDS is not None:
            done = done or time.monotonic() - self.created >= IMPORT_SNAPSHOT_SECONDS
        if done:
            gib = max(1, math.ceil(self.size / GIB))
            self.snapshot = _snapshot_without_volume(
                ec2_backend, gib, f"Created by AWS-VMImport service for {self.id}", self.encrypted
            )

    def detail(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "Description": self.description,
            "Format": self.format,
            "UserBucket": {"S3Bucket": self.bucket, "S3Key": self.key},
        }
        if self.encrypted:
            d["Encrypted"] = True
        if self.snapshot is None:
            # AWS: DiskImageSize 0.0 until converted, Progress a percentage string.
            progress = 3 + min(90, 90 * self.describes // max(1, IMPORT_SNAPSHOT_DESCRIBES))
            d.update(DiskImageSize=0.0, Progress=str(progress), Status="active", StatusMessage="pending")
        else:
            d.update(DiskImageSize=float(self.size), SnapshotId=self.snapshot.id, Status="completed")
            if self.snapshot.kms_key_id:
                d["KmsKeyId"] = self.snapshot.kms_key_id
        return d

    def result(self) -> dict[str, Any]:
        r: dict[str, Any] = {"ImportTaskId": self.id, "SnapshotTaskDetail": self.detail(),
                             "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()]}
        if self.description is not None:
            r["Description"] = self.description
        return r


def _snapshot_without_volume(ec2_backend: Any, size_gib: int, description: str, encrypted: bool) -> Any:
    """A completed EC2 snapshot with no volume behind it (AWS reports VolumeId vol-ffffffff).

    moto's Snapshot needs a Volume object; make one, then take it out of DescribeVolumes.
    """
    zone = f"{ec2_backend.region_name}a"
    volume = ec2_backend.create_volume(size=size_gib, zone_name=zone, encrypted=encrypted)
    snapshot = ec2_backend.create_snapshot(volume.id, description)
    ec2_backend.volumes.pop(volume.id)
    volume.id = AWS_IMPORTED_VOLUME_ID
    snapshot.kms_key_id = volume.kms_key_id
    snapshot.encrypted = bool(encrypted)
    return snapshot


def _check_vmimport_role(response: Any, role_name: str) -> None:
    from moto.iam.models import iam_backends

    error = _ec2_error(
        "InvalidParameter",
        f"The service role {role_name} provided does not exist or does not have sufficient permissions",
    )
    try:
        role = iam_backends[response.current_account][response.partition].get_role(role_name)
    except Exception:
        raise error
    # VM Import assumes the role as vmie.amazonaws.com; a role it cannot assume is unusable.
    if "vmie.amazonaws.com" not in str(role.assume_role_policy_document):
        raise error


def _s3_object_size(response: Any, bucket: str, key: str) -> int:
    from moto.s3.models import s3_backends

    denied = _ec2_error("InvalidParameter", f"User does not have access to the S3 object ({bucket}/{key}).")
    s3 = s3_backends[response.current_account][response.partition]
    try:
        b = s3.get_bucket(bucket)
        obj = s3.get_object(bucket, key)
    except Exception:
        raise denied
    if obj is None:
        raise denied
    if b.region_name != response.region:
        raise _ec2_error(
            "InvalidParameter",
            f"The given S3 object is not local to the region. The object must be located in {response.region}.",
        )
    return int(obj.size)


def import_snapshot(self: Any) -> Any:
    from moto.core.responses import ActionResult

    container = self._get_param("DiskContainer") or {}
    bucket_spec = container.get("UserBucket") or {}
    bucket, key = bucket_spec.get("S3Bucket"), bucket_spec.get("S3Key")
    url = container.get("Url")
    if not (bucket and key) and url and url.startswith("s3://"):
        bucket, _, key = url[len("s3://"):].partition("/")
    if not (bucket and key):
        raise _ec2_error("InvalidParameter", "DiskContainer needs UserBucket (S3Bucket, S3Key) or an s3:// Url.")
    fmt = (container.get("Format") or "").upper()
    if fmt not in ("VHD", "VMDK", "RAW"):
        raise _ec2_error("InvalidParameter", f"Unsupported disk format '{container.get('Format')}': use VHD, VMDK or RAW.")
    tags = self._parse_tag_specification(expected_type="import-snapshot-task").get("import-snapshot-task", {})
    self.error_on_dryrun()

    tasks = _state(self.ec2_backend, "import_snapshot_tasks")
    tokens = _state(self.ec2_backend, "import_snapshot_tokens")
    token = self._get_param("ClientToken")
    with _lock:
        if token and token in tokens:
            fingerprint, task_id = tokens[token]
            if fingerprint != _fingerprint(self.querystring):
                raise _idempotent_mismatch()
            return ActionResult(tasks[task_id].result())
        size = _s3_object_size(self, bucket, key)
        _check_vmimport_role(self, self._get_param("RoleName") or "vmimport")
        task_id = "import-snap-" + "".join(random.choice("0123456789abcdef") for _ in range(17))
        task = ImportSnapshotTask(task_id, self._get_param("Description"), fmt, bucket, key, size,
                                  bool(self._get_param("Encrypted")), tags)
        tasks[task_id] = task
        if token:
            tokens[token] = (_fingerprint(self.querystring), task_id)
    return ActionResult(task.result())


def describe_import_snapshot_tasks(self: Any) -> Any:
    from moto.core.responses import ActionResult

    self.error_on_dryrun()
    tasks = _state(self.ec2_backend, "import_snapshot_tasks")
    ids = self._get_param("ImportTaskIds") or []
    with _lock:
        for task_id in ids:
            if task_id not in tasks:
                # Assumed shape of AWS's answer for an unknown task id.
                raise _ec2_error("InvalidConversionTaskId", f"The conversion task ID '{task_id}' does not exist.")
        selected = [tasks[i] for i in ids] if ids else list(tasks.values())
        for name, values in self._filters_from_querystring().items():
            if name.startswith("tag:"):
                selected = [t for t in selected if t.tags.get(name[4:]) in values]
            elif name == "tag-key":
                selected = [t for t in selected if any(k in values for k in t.tags)]
            else:
                raise _ec2_error("InvalidParameterValue", f"The filter '{name}' is invalid")
        start = int(self._get_param("NextToken") or 0)
        limit = int(self._get_param("MaxResults") or 1000)
        page = selected[start:start + limit]
        for task in page:
            task.maybe_complete(self.ec2_backend)
        result: dict[str, Any] = {"ImportSnapshotTasks": [t.result() for t in page]}
        if start + limit < len(selected):
            result["NextToken"] = str(start + limit)
    return ActionResult(result)


# ------------------------------------------------------------------------------------------------
# 2. EC2 GetConsoleOutput with the NixOS host key block
# ------------------------------------------------------------------------------------------------


def _parse_ed25519(line: str) -> bytes:
    """The key blob of an `ssh-ed25519 AAAA... [comment]` line; ValueError if it is not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    parts = line.split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise ValueError("expected `ssh-ed25519 AAAA... [comment]`")
    key = load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an ed25519 key")
    return base64.b64decode(parts[1])


def _generated_key(instance_id: str, hostname: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with _lock:
        if instance_id not in _generated_keys:
            public = Ed25519PrivateKey.generate().public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            _generated_keys[instance_id] = f"{public.decode()} root@{hostname}"
        return _generated_keys[instance_id]


def _console_key_for(instance: Any, hostname: str) -> str:
    with _lock:
        if instance.id in _console_keys:
            return _console_keys[instance.id]
        tags = {t["key"]: t["value"] for t in instance.get_tags()}
        for tag_key, tag_value, key in _console_tag_keys:
            if tags.get(tag_key) == tag_value:
                return key
        if "*" in _console_keys:
            return _console_keys["*"]
    return _generated_key(instance.id, hostname)


# Instance families on the Xen hypervisor (AWS EC2 User Guide, "Instances built on the AWS Nitro System"),
# the same list as paranix's sdk/src/aws/catalog.rs.
_XEN_FAMILIES = {
    "t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "cc2", "cr1", "r3", "r4", "x1", "x1e", "d2", "h1",
    "hs1", "i2", "i3", "g2", "g3", "p2", "p3", "f1", "hi1",
}


def nixos_console(hostname: str, key_line: str) -> str:
    """What a NixOS EC2 instance's serial console ends with once sshd and print-host-key ran."""
    blob = _parse_ed25519(key_line)
    fingerprint = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    comment = " ".join(key_line.split()[2:]) or "no comment"
    lines = [
        "[    0.000000] Linux version 6.12.41 (nixbld@localhost) (gcc (GCC) 14.3.0, GNU ld (GNU Binutils) 2.44) #1-NixOS SMP PREEMPT_DYNAMIC",
        "[    0.000000] Command line: init=/nix/var/nix/profiles/system/init console=ttyS0,115200n8 random.trust_cpu=on nvme_core.io_timeout=4294967295",
        "<<< Welcome to NixOS 25.11 (x86_64) - ttyS0 >>>",
        "",
        "Run 'nixos-help' for the NixOS manual.",
        "",
        f"{hostname} login: ",
        "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
        f"256 SHA256:{fingerprint} {comment} (ED25519)",
        "-----END SSH HOST KEY FINGERPRINTS-----",
        "-----BEGIN SSH HOST KEY KEYS-----",
        key_line.strip(),
        "-----END SSH HOST KEY KEYS-----",
        "",
    ]
    return "\r\n".join(lines)


def get_console_output(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.ec2.utils import Base64EncodedString

    instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
    self.error_on_dryrun()
    latest = str(self._get_param("Latest") or "").lower() == "true"
    family = str(instance.instance_type).split(".")[0]
    metal = str(instance.instance_type).split(".")[-1].startswith("metal")
    if latest and family in _XEN_FAMILIES and not metal:
        from moto.ec2.exceptions import EC2ClientError

        raise EC2ClientError(
            "UnsupportedOperation",
            f"The instance type {instance.instance_type} does not support retrieving the latest console output",
        )
    hostname = "ip-" + (instance.private_ip or "10-0-0-1").replace(".", "-")
    text = nixos_console(hostname, _console_key_for(instance, hostname))
    return ActionResult({
        "InstanceId": instance.id,
        "Timestamp": utcnow(),
        "Output": Base64EncodedString.from_raw_string(text),
    })


# ------------------------------------------------------------------------------------------------
# 3./4. EC2 RegisterImage, DescribeImages, ModifyImageAttribute Description
# ------------------------------------------------------------------------------------------------


@functools.cache
def _registered_ami_class() -> type:
    from moto.ec2.models.amis import Ami

    class RegisteredAmi(Ami):
        """An image made by RegisterImage: reports the mappings and attributes it was given."""

        __module__ = "moto.ec2.models.amis"  # moto's model metaclass files classes by moto service

        def __init__(self, ec2_backend: Any, ami_id: str, params: dict[str, Any], mappings: list[dict[str, Any]],
                     tags: dict[str, str]):
            super().__init__(ec2_backend, ami_id, name=params.get("Name"),
                             description=params.get("Description"),
                             virtualization_type=params.get("VirtualizationType") or "paravirtual",
                             architecture=params.get("Architecture") or "i386",
                             root_device_type="ebs",
                             root_device_name=params.get("RootDeviceName") or "/dev/sda1",
                             sriov=params.get("SriovNetSupport"), boot_mode=params.get("BootMode"),
                             hypervisor="xen", region_name=f"{ec2_backend.region_name}a", tags=tags)
            # Ami.__init__ always creates a stand-in snapshot; a registered image has none of its own.
            ec2_backend.snapshots.pop(self.ebs_snapshot.id, None)
            self.ebs_snapshot = None
            self.mappings = mappings
            self.ena_support = params.get("EnaSupport")
            self.sriov_net_support = params.get("SriovNetSupport")
            self.imds_support = self.imds = params.get("ImdsSupport")
            self.tpm_support = self.tmp = params.get("TpmSupport")
            self.image_location = f"{ec2_backend.account_id}/{params.get('Name')}"
            self.platform_details = "Linux/UNIX"
            self.usage_operation = "RunInstances"

        @property
        def block_device_mappings(self) -> list[dict[str, Any]]:
            return self.mappings

    return RegisteredAmi


def _image_mappings(backend: Any, requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RegisterImage's BlockDeviceMappings as DescribeImages reports them."""
    mappings = []
    for m in requested:
        out: dict[str, Any] = {"DeviceName": m.get("DeviceName")}
        if m.get("VirtualName"):
            out["VirtualName"] = m["VirtualName"]
        if "NoDevice" in m:
            out["NoDevice"] = ""
        ebs = m.get("Ebs")
        if ebs is not None:
            snapshot_id = ebs.get("SnapshotId")
            size = ebs.get("VolumeSize")
            encrypted = bool(ebs.get("Encrypted"))
            if snapshot_id:
                snapshot = backend.snapshots.get(snapshot_id)
                if snapshot is None:
                    raise _ec2_error("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
                if snapshot.status != "completed":
                    raise _ec2_error("IncorrectState", f"Snapshot '{snapshot_id}' is not in the 'completed' state.")
                size = int(size) if size else snapshot.volume_size
                if size < snapshot.volume_size:
                    raise _ec2_error(
                        "InvalidBlockDeviceMapping",
                        f"Volume of size {size}GB is smaller than snapshot '{snapshot_id}', expect size >= {snapshot.volume_size}GB",
                    )
                encrypted = bool(snapshot.encrypted)
            elif not size:
                raise _ec2_error("InvalidBlockDeviceMapping", "snapshotId or volumeSize is required")
            volume_type = ebs.get("VolumeType") or "gp2"
            out_ebs: dict[str, Any] = {
                "DeleteOnTermination": ebs.get("DeleteOnTermination", True) not in (False, "false"),
                "SnapshotId": snapshot_id,
                "VolumeSize": int(size),
                "VolumeType": volume_type,
                "Encrypted": encrypted,
            }
            if volume_type == "gp3":
                out_ebs["Iops"] = int(ebs.get("Iops") or 3000)
                out_ebs["Throughput"] = int(ebs.get("Throughput") or 125)
            elif ebs.get("Iops"):
                out_ebs["Iops"] = int(ebs["Iops"])
            if ebs.get("KmsKeyId"):
                out_ebs["KmsKeyId"] = ebs["KmsKeyId"]
            out["Ebs"] = out_ebs
        mappings.append(out)
    return mappings


def register_image(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import InvalidTaggableResourceType
    from moto.ec2.utils import random_ami_id

    params = {k: self._get_param(k) for k in (
        "Name", "Description", "Architecture", "VirtualizationType", "RootDeviceName", "EnaSupport",
        "SriovNetSupport", "BootMode", "ImdsSupport", "TpmSupport")}
    backend = self.ec2_backend
    if not params["Name"]:
        raise _ec2_error("MissingParameter", "The request must contain the parameter name")
    tags: dict[str, str] = {}
    for spec in self._get_param("TagSpecifications", []) or []:
        if spec.get("ResourceType") != "image":
            raise InvalidTaggableResourceType(spec.get("ResourceType"))
        tags.update({t["Key"]: t["Value"] for t in spec.get("Tags", [])})
    self.error_on_dryrun()
    with _lock:
        for ami in backend.amis.values():
            if ami.owner_id == backend.account_id and ami.name == params["Name"]:
                raise _ec2_error("InvalidAMIName.Duplicate",
                                 f"AMI name {params['Name']} is already in use by AMI {ami.id}")
        mappings = _image_mappings(backend, self._get_param("BlockDeviceMappings", []) or [])
        ami_id = random_ami_id()
        ami = _registered_ami_class()(backend, ami_id, params, mappings, tags)
        backend.amis[ami_id] = ami
        for m in mappings:
            snapshot = backend.snapshots.get((m.get("Ebs") or {}).get("SnapshotId"))
            if snapshot is not None:
                snapshot.from_ami = ami_id  # moto's DeleteSnapshot then answers InvalidSnapshot.InUse
    return ActionResult({"ImageId": ami_id})


def _wrap_modify_image_attribute(original: Callable[..., Any]) -> Callable[..., Any]:
    def modify_image_attribute(self: Any) -> Any:
        description = (self._get_param("Description") or {}).get("Value")
        if description is None and self._get_param("Attribute") == "description":
            description = self._get_param("Value")
        result = original(self)  # launch permissions, validation, DryRun
        if description is not None:
            self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0].description = description
        return result

    return modify_image_attribute


# ------------------------------------------------------------------------------------------------
# 5. EC2 RunInstances: ClientToken idempotency, block devices from the image
# ------------------------------------------------------------------------------------------------


def _instance_mappings(ami: Any, requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The image's mappings overridden per device by the request's, in moto's internal form."""
    by_device: dict[str, dict[str, Any]] = {}
    for m in ami.block_device_mappings:
        if "Ebs" in m:
            by_device[m["DeviceName"]] = dict(m["Ebs"])
    for m in requested:
        device = m.get("DeviceName")
        if "NoDevice" in m:
            by_device.pop(device, None)
            continue
        if "Ebs" not in m:
            continue
        merged = by_device.get(device, {})
        merged.update({k: v for k, v in m["Ebs"].items() if v is not None})
        snapshot_size = merged.get("SnapshotId") and by_device.get(device, {}).get("VolumeSize")
        if snapshot_size and int(merged.get("VolumeSize") or 0) < int(snapshot_size):
            raise _ec2_error(
                "InvalidBlockDeviceMapping",
                f"Volume of size {merged.get('VolumeSize')}GB is smaller than snapshot '{merged['SnapshotId']}', expect size >= {snapshot_size}GB",
            )
        by_device[device] = merged
    return [{
        "DeviceName": device,
        "VirtualName": None,
        "NoDevice": None,
        "Ebs": {
            "SnapshotId": ebs.get("SnapshotId"),
            "VolumeSize": int(ebs["VolumeSize"]) if ebs.get("VolumeSize") else None,
            "DeleteOnTermination": ebs.get("DeleteOnTermination", True) not in (False, "false"),
            "VolumeType": ebs.get("VolumeType"),
            "Iops": ebs.get("Iops"),
            "Encrypted": ebs.get("Encrypted") in (True, "true"),
            "KmsKeyId": ebs.get("KmsKeyId"),
        },
    } for device, ebs in by_device.items()]


def _wrap_run_instances(original: Callable[..., Any]) -> Callable[..., Any]:
    def run_instances(self: Any) -> Any:
        from moto.core.responses import ActionResult

        ami = self.ec2_backend.amis.get(self._get_param("ImageId"))
        if getattr(ami, "mappings", None) is not None:  # an image from RegisterImage (3)
            self._paranix_mappings = _instance_mappings(ami, self._get_param("BlockDeviceMappings", []) or [])
        token = self._get_param("ClientToken")
        if not token:
            return original(self)
        tokens = _state(self.ec2_backend, "run_instances_tokens")
        with _lock:
            if token in tokens:
                fingerprint, reservation = tokens[token]
                if fingerprint != _fingerprint(self.querystring):
                    raise _idempotent_mismatch()
                return ActionResult(reservation)
            result = original(self)
            tokens[token] = (_fingerprint(self.querystring), result.result)
            return result

    return run_instances


def _wrap_parse_block_device_mapping(original: Callable[..., Any]) -> Callable[..., Any]:
    def _parse_block_device_mapping(self: Any) -> Any:
        mappings = getattr(self, "_paranix_mappings", None)
        return mappings if mappings is not None else original(self)

    return _parse_block_device_mapping


# ------------------------------------------------------------------------------------------------
# 6. EBS StartSnapshot / CompleteSnapshot
# ------------------------------------------------------------------------------------------------


def _wrap_start_snapshot(original: Callable[..., Any]) -> Callable[..., Any]:
    def start_snapshot(self: Any) -> Any:
        result = original(self)
        if isinstance(result, str):  # moto < 5.2.5 answers EBS calls with JSON text
            from moto.core.responses import ActionResult

            result = ActionResult(json.loads(result))
        snapshot_id = result.result["SnapshotId"]
        ec2 = self.ebs_backend.ec2_backend
        snapshot = ec2.snapshots[snapshot_id]
        ec2.volumes.pop(snapshot.volume.id, None)  # moto made a volume just to hang the snapshot on
        snapshot.volume.id = AWS_IMPORTED_VOLUME_ID
        snapshot.status = "pending"
        if self._get_param("Encrypted"):
            if not ec2.default_kms_key_id:
                ec2._create_default_encryption_key()
            snapshot.encrypted = True
            snapshot.kms_key_id = self._get_param("KmsKeyArn") or ec2.default_kms_key_id
            result.result["KmsKeyArn"] = snapshot.kms_key_id
        self.ebs_backend.snapshots[snapshot_id].block_size = EBS_BLOCK_SIZE
        result.result["BlockSize"] = EBS_BLOCK_SIZE
        return result

    return start_snapshot


def _wrap_complete_snapshot(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps EBSBackend.complete_snapshot(snapshot_id): the EC2 snapshot is completed too."""

    def complete_snapshot(self: Any, snapshot_id: str) -> Any:
        result = original(self, snapshot_id=snapshot_id)
        snapshot = self.ec2_backend.snapshots.get(snapshot_id)
        if snapshot is not None:
            snapshot.status = "completed"
        return result

    return complete_snapshot


# ------------------------------------------------------------------------------------------------
# 7./8. S3 GetBucketVersioning root element, atomic conditional writes
# ------------------------------------------------------------------------------------------------


def get_bucket_versioning(self: Any) -> Any:
    status = self.backend.get_bucket_versioning(self.bucket_name)  # NoSuchBucket as moto answers it
    self.data["Action"] = "GetBucketVersioning"
    inner = f"<Status>{status}</Status>" if status else ""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>')
    return 200, {"Content-Type": "application/xml"}, body


_s3_write_lock = threading.Lock()


def _wrap_delete_key_pair(original: Callable[..., Any]) -> Callable[..., Any]:
    """DeleteKeyPair by KeyPairId: moto only honours KeyName and silently keeps the pair. AWS accepts either."""

    def delete_key_pair(self: Any) -> Any:
        key_id = self._get_param("KeyPairId")
        if key_id and not self._get_param("KeyName"):
            for name, pair in list(self.ec2_backend.key_pairs.items()):
                if pair.id == key_id:
                    # Parameters are read from `params` (parsed) or `querystring`, depending on the moto build.
                    if isinstance(getattr(self, "params", None), dict):
                        self.params["KeyName"] = name
                    self.querystring["KeyName"] = [name]
                    break
        return original(self)

    return delete_key_pair


def _serialized_writes(original: Callable[..., Any]) -> Callable[..., Any]:
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _s3_write_lock:
            return original(self, *args, **kwargs)

    return locked


# ------------------------------------------------------------------------------------------------
# Installing the extensions; control endpoints; the server
# ------------------------------------------------------------------------------------------------


TESTED_MOTO = "5.2.5"


def install_extensions() -> None:
    """Patch moto's response classes (call once, before serving)."""
    import moto
    from moto.ebs.models import EBSBackend
    from moto.ebs.responses import EBSResponse
    from moto.ec2.responses import EC2Response
    from moto.s3.responses import S3Response

    if moto.__version__ != TESTED_MOTO:
        print(f"paranix_moto: written for moto {TESTED_MOTO}, running {moto.__version__}; "
              "extensions may not match (run tests/moto/install.sh)", file=sys.stderr)
    for name in ("import_snapshot", "describe_import_snapshot_tasks"):
        if hasattr(EC2Response, name):
            raise RuntimeError(f"moto now implements EC2 {name}: review the paranix extension")

    def patch(cls: type, name: str, replacement: Callable[..., Any], wrap: bool = True) -> None:
        original = getattr(cls, name, None)
        if original is None:
            print(f"paranix_moto: moto has no {cls.__name__}.{name}; that extension is off", file=sys.stderr)
            return
        setattr(cls, name, replacement(original) if wrap else replacement)

    EC2Response.import_snapshot = import_snapshot
    EC2Response.describe_import_snapshot_tasks = describe_import_snapshot_tasks
    patch(EC2Response, "get_console_output", get_console_output, wrap=False)
    patch(EC2Response, "register_image", register_image, wrap=False)
    patch(EC2Response, "modify_image_attribute", _wrap_modify_image_attribute)
    patch(EC2Response, "run_instances", _wrap_run_instances)
    patch(EC2Response, "delete_key_pair", _wrap_delete_key_pair)
    patch(EC2Response, "_parse_block_device_mapping", _wrap_parse_block_device_mapping)
    patch(EBSResponse, "start_snapshot", _wrap_start_snapshot)
    patch(EBSBackend, "complete_snapshot", _wrap_complete_snapshot)
    patch(S3Response, "get_bucket_versioning", get_bucket_versioning, wrap=False)
    for name in ("put_object", "copy_object", "delete_object", "_key_response_post"):
        patch(S3Response, name, _serialized_writes)


def _reset_extension_state() -> None:
    global _request_count
    with _lock:
        _console_keys.clear()
        _console_tag_keys.clear()
        _generated_keys.clear()
        _request_count = 0


def _json_response(start_response: Any, status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _set_console_host_key(request: dict[str, Any]) -> None:
    key = str(request.get("public_key", "")).strip()
    _parse_ed25519(key)  # ValueError if it is not a real ed25519 public key line
    with _lock:
        if "tag" in request:
            tag = request["tag"]
            _console_tag_keys.insert(0, (str(tag["Key"]), str(tag["Value"]), key))
        else:
            _console_keys[str(request["instance_id"])] = key


def with_control_endpoints(app: Callable[..., Any]) -> Callable[..., Any]:
    """WSGI middleware: serve /paranix/*, count AWS requests, clear extension state on reset."""

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        global _request_count
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/paranix/health":
            return _json_response(start_response, "200 OK", {"status": "ok", "pid": os.getpid()})
        if path == "/paranix/requests":
            return _json_response(start_response, "200 OK", {"count": _request_count})
        if path == "/paranix/console-host-key" and method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                _set_console_host_key(json.loads(environ["wsgi.input"].read(length) or b"{}"))
            except (ValueError, KeyError, TypeError) as e:
                return _json_response(start_response, "400 Bad Request", {"error": f"{type(e).__name__}: {e}"})
            return _json_response(start_response, "200 OK", {"status": "ok"})
        if path.startswith("/paranix/"):
            return _json_response(start_response, "404 Not Found", {"error": f"no such endpoint {method} {path}"})
        if path.startswith("/moto-api/reset") and method == "POST":
            _reset_extension_state()
        elif not path.startswith("/moto-api"):
            with _lock:
                _request_count += 1
        return app(environ, start_response)

    return middleware


def main(argv: list[str] | None = None) -> None:
    global IMPORT_SNAPSHOT_DESCRIBES, IMPORT_SNAPSHOT_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--import-snapshot-describes", type=int, default=IMPORT_SNAPSHOT_DESCRIBES,
                        help="describe calls after which an import-snapshot task is completed (default 2)")
    parser.add_argument("--import-snapshot-seconds", type=float, default=None,
                        help="seconds after which an import-snapshot task is completed (default: never by time)")
    args = parser.parse_args(argv)
    IMPORT_SNAPSHOT_DESCRIBES = args.import_snapshot_describes
    IMPORT_SNAPSHOT_SECONDS = args.import_snapshot_seconds
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto_server does; moto calls itself with it

    from werkzeug.serving import run_simple

    from moto.moto_server import werkzeug_app

    install_extensions()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app)
    # As moto_server does (the handler keeps underscores in S3 metadata headers; moto >= 5.2.5).
    handler = getattr(werkzeug_app, "MotoRequestHandler", None)
    run_simple(args.host, args.port, with_control_endpoints(app), threaded=True, request_handler=handler)


if __name__ == "__main__":
    main()
