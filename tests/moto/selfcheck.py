#!/usr/bin/env python3
"""Self-check of paranix_moto.py: drives the calls paranix makes with boto3 (shipped with moto) and
checks the raw XML of EC2/IAM answers against botocore's output shapes the way a strict generated
client (aws-sdk-rust) reads them (root element, element names, booleans, numbers, timestamps).

    /root/.cache/paranix-moto-venv/bin/python tests/moto/selfcheck.py [--endpoint http://127.0.0.1:PORT]

Without --endpoint it starts paranix_moto.py on a free loopback port and stops it (by PID) at the
end. Exits non-zero on the first failed check. Re-run it after changing the pinned moto version.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET

import boto3
import botocore
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
problems: list[str] = []


# --- raw XML shape check ------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.split("}", 1)[-1]


def _xml_name(member: str, shape, protocol: str) -> str:
    if "name" in shape.serialization:
        return shape.serialization["name"]
    return member[0].lower() + member[1:] if protocol == "ec2" else member


def _check_shape(shape, el, path: str, protocol: str, out: list[str]) -> None:
    t = shape.type_name
    if t == "structure":
        names = {_xml_name(m, s, protocol): s for m, s in shape.members.items()}
        for child in el:
            tag = _local(child.tag)
            if tag not in names:
                out.append(f"unknown element {path}/{tag}")
            else:
                _check_shape(names[tag], child, f"{path}/{tag}", protocol, out)
    elif t == "list":
        item = "item" if protocol == "ec2" else shape.member.serialization.get("name", "member")
        for child in el:
            if _local(child.tag) != item:
                out.append(f"list {path} has <{_local(child.tag)}>, expected <{item}>")
            else:
                _check_shape(shape.member, child, f"{path}/{item}", protocol, out)
    elif t != "map":
        text = el.text or ""
        ok = True
        if t == "boolean":
            ok = text in ("true", "false")
        elif t in ("integer", "long"):
            ok = re.fullmatch(r"-?\d+", text) is not None
        elif t in ("double", "float"):
            try:
                float(text)
            except ValueError:
                ok = False
        elif t == "timestamp":
            ok = TS.match(text) is not None
        if not ok or len(el):
            out.append(f"{t} {path} = {text!r}")


def check_xml(op_model, body: bytes, status: int) -> list[str]:
    protocol = op_model.metadata["protocol"]
    if protocol not in ("ec2", "query"):
        return []
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        return [f"not XML ({e}): {body[:120]!r}"]
    if status >= 300:
        want = "Response" if protocol == "ec2" else "ErrorResponse"
        return [] if _local(root.tag) == want else [f"error root <{_local(root.tag)}>"]
    want = f"{op_model.name}Response"
    out = [] if _local(root.tag) == want else [f"root <{_local(root.tag)}>, expected <{want}>"]
    if op_model.output_shape is None:
        return out
    if protocol == "query":
        found = [c for c in root if _local(c.tag) == f"{op_model.name}Result"]
        if not found:
            return out + [f"no <{op_model.name}Result>"]
        root = found[0]
    else:
        for c in list(root):
            if _local(c.tag) == "requestId":
                root.remove(c)
    _check_shape(op_model.output_shape, root, f"/{want}", protocol, out)
    return out


# --- helpers ------------------------------------------------------------------------------------

def ok(cond: bool, what: str) -> None:
    if not cond:
        print(f"FAIL {what}")
        sys.exit(1)
    print(f"ok   {what}")


def error_code(fn, *args, **kwargs) -> str | None:
    try:
        fn(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None


def raw(endpoint: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(endpoint + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def clients(endpoint: str):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
              aws_secret_access_key="test")
    cfg = Config(retries={"max_attempts": 1}, max_pool_connections=32)
    s3 = boto3.client("s3", config=cfg.merge(Config(s3={"addressing_style": "path"})), **kw)
    made = {"s3": s3, **{n: boto3.client(n, config=cfg, **kw) for n in ("ec2", "iam", "ebs")}}

    def hook(http_response, model, **_):
        for p in check_xml(model, http_response.content, http_response.status_code):
            problems.append(f"{model.name}: {p}")

    for name in ("ec2", "iam"):  # reading S3's content here would consume GetObject's stream
        made[name].meta.events.register("after-call", hook)
    return made


# --- checks -------------------------------------------------------------------------------------

def check_s3(endpoint: str, s3) -> None:
    s3.create_bucket(Bucket="paranix-versioning")
    for expect in (None, "Enabled", "Suspended"):
        if expect:
            s3.put_bucket_versioning(Bucket="paranix-versioning", VersioningConfiguration={"Status": expect})
        status, body = raw(endpoint, "GET", "/paranix-versioning?versioning")
        root = ET.fromstring(body)
        status_el = root.find("{http://s3.amazonaws.com/doc/2006-03-01/}Status")
        ok(status == 200 and root.tag == "{http://s3.amazonaws.com/doc/2006-03-01/}VersioningConfiguration"
           and (status_el.text if status_el is not None else None) == expect,
           f"GetBucketVersioning raw root <VersioningConfiguration xmlns=...>, Status {expect}: {body[-120:]!r}")
        ok(s3.get_bucket_versioning(Bucket="paranix-versioning").get("Status") == expect,
           "boto3 get_bucket_versioning agrees")
    ok(error_code(s3.get_bucket_versioning, Bucket="no-such-bucket-x") == "NoSuchBucket",
       "GetBucketVersioning on a missing bucket: NoSuchBucket")

    # Conditional writes (state locking): If-None-Match: * and If-Match: <etag>.
    s3.create_bucket(Bucket="paranix-state")
    first = s3.put_object(Bucket="paranix-state", Key="lock", Body=b"a", IfNoneMatch="*")
    ok(error_code(s3.put_object, Bucket="paranix-state", Key="lock", Body=b"b", IfNoneMatch="*")
       == "PreconditionFailed", "PutObject If-None-Match:* on an existing key: 412 PreconditionFailed")
    ok(error_code(s3.put_object, Bucket="paranix-state", Key="lock", Body=b"c", IfMatch='"0123"')
       == "PreconditionFailed", "PutObject If-Match with a stale ETag: 412 PreconditionFailed")
    second = s3.put_object(Bucket="paranix-state", Key="lock", Body=b"d", IfMatch=first["ETag"])
    ok(s3.get_object(Bucket="paranix-state", Key="lock")["Body"].read() == b"d",
       "PutObject If-Match with the current ETag replaces the object")
    ok(error_code(s3.put_object, Bucket="paranix-state", Key="gone", Body=b"e", IfMatch=second["ETag"])
       == "NoSuchKey", "PutObject If-Match on a missing key: 404 NoSuchKey")
    ok(error_code(s3.delete_object, Bucket="paranix-state", Key="lock", IfMatch='"0123"')
       == "PreconditionFailed", "DeleteObject If-Match with a stale ETag: 412")
    head = s3.head_object(Bucket="paranix-state", Key="lock", ChecksumMode="ENABLED")
    ok("ChecksumCRC32" in head or "ChecksumCRC64NVME" in head, "HeadObject ChecksumMode=ENABLED returns a checksum")

    # Atomicity: 16 writers race with If-None-Match: * on 10 keys; exactly one may win each.
    body = b"x" * 400_000
    for round_ in range(10):
        wins: list[int] = []
        barrier = threading.Barrier(16)

        def writer(i: int) -> None:
            barrier.wait()
            if error_code(s3.put_object, Bucket="paranix-state", Key=f"race{round_}", Body=body,
                          IfNoneMatch="*") is None:
                wins.append(i)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(wins) != 1:
            ok(False, f"exactly one If-None-Match writer wins (round {round_}: {len(wins)})")
    ok(True, "concurrent If-None-Match:* writers: exactly one winner in each of 10 rounds")

    # Multipart with If-None-Match on completion.
    mp = s3.create_multipart_upload(Bucket="paranix-state", Key="big")
    p1 = s3.upload_part(Bucket="paranix-state", Key="big", UploadId=mp["UploadId"], PartNumber=1, Body=b"1" * 5 * 2**20)
    p2 = s3.upload_part(Bucket="paranix-state", Key="big", UploadId=mp["UploadId"], PartNumber=2, Body=b"2")
    s3.complete_multipart_upload(Bucket="paranix-state", Key="big", UploadId=mp["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    ok(s3.head_object(Bucket="paranix-state", Key="big")["ContentLength"] == 5 * 2**20 + 1,
       "multipart upload assembles the object")


def vmimport_role(iam, name: str = "vmimport", service: str = "vmie.amazonaws.com") -> None:
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
                       "Condition": {"StringEquals": {"sts:Externalid": "vmimport"}}}]}))


def check_import_snapshot(endpoint: str, c) -> str:
    s3, ec2, iam = c["s3"], c["ec2"], c["iam"]
    s3.create_bucket(Bucket="paranix-images")
    s3.put_object(Bucket="paranix-images", Key="nixos.vhd", Body=b"\0" * (3 * 2**20))
    container = {"Format": "vhd", "UserBucket": {"S3Bucket": "paranix-images", "S3Key": "nixos.vhd"}}
    ok(error_code(ec2.import_snapshot, DiskContainer=container) == "InvalidParameter",
       "ImportSnapshot without a vmimport role: InvalidParameter")
    vmimport_role(iam, "wrong-trust", service="ec2.amazonaws.com")
    ok(error_code(ec2.import_snapshot, DiskContainer=container, RoleName="wrong-trust") == "InvalidParameter",
       "ImportSnapshot with a role vmie.amazonaws.com cannot assume: InvalidParameter")
    vmimport_role(iam)
    missing = {"Format": "RAW", "UserBucket": {"S3Bucket": "paranix-images", "S3Key": "nope.raw"}}
    ok(error_code(ec2.import_snapshot, DiskContainer=missing) == "InvalidParameter",
       "ImportSnapshot of a missing S3 object: InvalidParameter")

    tags = [{"ResourceType": "import-snapshot-task", "Tags": [{"Key": "paranix", "Value": "img"}]}]
    r = ec2.import_snapshot(DiskContainer=container, Description="nixos", ClientToken="tok-1", TagSpecifications=tags)
    task_id = r["ImportTaskId"]
    ok(re.fullmatch(r"import-snap-[0-9a-f]{17}", task_id) is not None, f"ImportTaskId {task_id}")
    d = r["SnapshotTaskDetail"]
    ok(d["Status"] == "active" and d["StatusMessage"] == "pending" and d["Format"] == "VHD"
       and d["UserBucket"] == container["UserBucket"] and "SnapshotId" not in d and r["Tags"] == tags[0]["Tags"],
       f"ImportSnapshot answers an active task: {d}")
    again = ec2.import_snapshot(DiskContainer=container, Description="nixos", ClientToken="tok-1", TagSpecifications=tags)
    ok(again["ImportTaskId"] == task_id, "same ClientToken, same task")
    ok(error_code(ec2.import_snapshot, DiskContainer=container, Description="other", ClientToken="tok-1")
       == "IdempotentParameterMismatch", "same ClientToken, other arguments: IdempotentParameterMismatch")

    first = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"][0]
    ok(first["SnapshotTaskDetail"]["Status"] == "active", "1st describe: active")
    by_tag = ec2.describe_import_snapshot_tasks(Filters=[{"Name": "tag:paranix", "Values": ["img"]}])
    ok([t["ImportTaskId"] for t in by_tag["ImportSnapshotTasks"]] == [task_id], "Filters tag:paranix finds the task")
    done = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"][0]
    dd = done["SnapshotTaskDetail"]
    ok(dd["Status"] == "completed" and dd["SnapshotId"].startswith("snap-") and dd["DiskImageSize"] == 3 * 2**20,
       f"task completed with a snapshot: {dd}")
    snap = ec2.describe_snapshots(SnapshotIds=[dd["SnapshotId"]])["Snapshots"][0]
    ok(snap["VolumeSize"] == 1 and snap["State"] == "completed" and snap["VolumeId"] == "vol-ffffffff"
       and not snap.get("Tags") and task_id in snap["Description"],
       f"snapshot in DescribeSnapshots (1 GiB, vol-ffffffff, no tags inherited): {snap}")
    ok(error_code(ec2.describe_import_snapshot_tasks, ImportTaskIds=["import-snap-00000000000000000"]) is not None,
       "DescribeImportSnapshotTasks of an unknown id fails")
    return dd["SnapshotId"]


def check_images_and_instances(c, snapshot_id: str) -> None:
    ec2 = c["ec2"]
    img = ec2.register_image(
        Name="nixos-paranix", Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot_id, "VolumeType": "gp3",
                                                                 "DeleteOnTermination": True}}],
        EnaSupport=True, SriovNetSupport="simple", BootMode="uefi", ImdsSupport="v2.0",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "paranix", "Value": "img"}]}])
    ami = img["ImageId"]
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    bdm = image["BlockDeviceMappings"]
    ok(bdm == [{"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": True, "SnapshotId": snapshot_id,
                                                    "VolumeSize": 1, "VolumeType": "gp3", "Encrypted": False,
                                                    "Iops": 3000, "Throughput": 125}}],
       f"DescribeImages keeps the block device mapping: {bdm}")
    ok(image["RootDeviceName"] == "/dev/xvda" and image["RootDeviceType"] == "ebs" and image["EnaSupport"] is True
       and image["BootMode"] == "uefi" and image["ImdsSupport"] == "v2.0" and image["SriovNetSupport"] == "simple"
       and image["Architecture"] == "x86_64" and image["VirtualizationType"] == "hvm"
       and image["Tags"] == [{"Key": "paranix", "Value": "img"}],
       "DescribeImages keeps RootDeviceName, EnaSupport, BootMode, ImdsSupport, tags")
    ok(ami in [i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]], "DescribeImages Owners=self")
    ok(error_code(ec2.register_image, Name="nixos-paranix", RootDeviceName="/dev/xvda",
                  BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot_id}}])
       == "InvalidAMIName.Duplicate", "RegisterImage with a used name: InvalidAMIName.Duplicate")
    ok(error_code(ec2.register_image, Name="small", RootDeviceName="/dev/xvda",
                  BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}])
       == "InvalidSnapshot.NotFound", "RegisterImage with an unknown snapshot: InvalidSnapshot.NotFound")
    ec2.modify_image_attribute(ImageId=ami, Description={"Value": "new description"})
    ok(ec2.describe_images(ImageIds=[ami])["Images"][0]["Description"] == "new description",
       "ModifyImageAttribute Description is applied")
    ok(error_code(ec2.delete_snapshot, SnapshotId=snapshot_id) == "InvalidSnapshot.InUse",
       "DeleteSnapshot of an image's snapshot: InvalidSnapshot.InUse")

    pub = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEVAjjFQmcF1NPDRXuNIrFMhYo2N5hGw4z8+06i+fjrO paranix")
    ec2.import_key_pair(KeyName="paranix", PublicKeyMaterial=pub.encode(),
                        TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "paranix", "Value": "k"}]}])
    ok([k["KeyName"] for k in ec2.describe_key_pairs(Filters=[{"Name": "tag:paranix", "Values": ["k"]}])["KeyPairs"]]
       == ["paranix"], "DescribeKeyPairs by tag filter")
    gid = ec2.create_security_group(GroupName="web", Description="web", TagSpecifications=[
        {"ResourceType": "security-group", "Tags": [{"Key": "paranix", "Value": "sg"}]}])["GroupId"]
    perm = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "ssh"}],
             "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "ssh6"}]}]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perm)
    sg = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    ok(sg["IpPermissions"][0]["IpRanges"] == perm[0]["IpRanges"]
       and sg["IpPermissions"][0]["Ipv6Ranges"] == perm[0]["Ipv6Ranges"], "ingress rule with descriptions round-trips")
    ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=perm)

    run = dict(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro", KeyName="paranix", SecurityGroupIds=[gid],
               ClientToken="run-1", MetadataOptions={"HttpTokens": "required"},
               TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]}],
               BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "Encrypted": True}}])
    iid = ec2.run_instances(**run)["Instances"][0]["InstanceId"]
    ok(ec2.run_instances(**run)["Instances"][0]["InstanceId"] == iid, "RunInstances: same ClientToken, same instance")
    ok(error_code(ec2.run_instances, **{**run, "InstanceType": "t3.small"}) == "IdempotentParameterMismatch",
       "RunInstances: same ClientToken, other arguments: IdempotentParameterMismatch")
    ok(len(ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web"]}])["Reservations"]) == 1,
       "one instance despite the retry")
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    ok(inst["MetadataOptions"]["HttpTokens"] == "required" and inst["RootDeviceName"] == "/dev/xvda",
       "instance: IMDSv2 required, root device from the image")
    vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    ok([(v["Attachments"][0]["Device"], v["Size"], v["VolumeType"], v["Encrypted"], v["SnapshotId"]) for v in vols]
       == [("/dev/xvda", 8, "gp3", True, snapshot_id)],
       f"root volume = image mapping + request override: {[(v['Size'], v['VolumeType'], v['Encrypted']) for v in vols]}")

    ec2.stop_instances(InstanceIds=[iid])
    ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.small"})
    ec2.modify_instance_attribute(InstanceId=iid, Groups=[gid])
    ec2.start_instances(InstanceIds=[iid])
    ec2.modify_instance_metadata_options(InstanceId=iid, HttpTokens="required")
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "deployed", "Value": "abc"}])
    ec2.delete_tags(Resources=[iid], Tags=[{"Key": "deployed"}])
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    ok(inst["InstanceType"] == "t3.small" and inst["Tags"] == [{"Key": "Name", "Value": "web"}],
       "ModifyInstanceAttribute, CreateTags/DeleteTags")
    check_console(c, iid)

    ec2.terminate_instances(InstanceIds=[iid])
    ec2.deregister_image(ImageId=ami)
    ec2.delete_snapshot(SnapshotId=snapshot_id)
    ec2.delete_security_group(GroupId=gid)
    ec2.delete_key_pair(KeyName="paranix")
    ok(True, "teardown: terminate, deregister, delete snapshot/sg/key pair")


def console_block(ec2, iid: str) -> list[str]:
    out = ec2.get_console_output(InstanceId=iid, Latest=True)["Output"]
    m = re.search(r"-----BEGIN SSH HOST KEY KEYS-----\r?\n(.*?)\r?\n-----END SSH HOST KEY KEYS-----", out, re.S)
    return m.group(1).splitlines() if m else []


def check_console(c, iid: str) -> None:
    ec2 = c["ec2"]
    endpoint = ec2.meta.endpoint_url
    lines = console_block(ec2, iid)
    ok(len(lines) == 1 and lines[0].startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5") and " root@ip-" in lines[0],
       f"console output has a host key block: {lines}")
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=lines[0], capture_output=True, text=True)
    ok(keygen.returncode == 0 and "(ED25519)" in keygen.stdout, f"ssh-keygen reads the key: {keygen.stdout.strip()}")
    ok(console_block(ec2, iid) == lines, "the generated key is stable per instance")
    mine = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEVAjjFQmcF1NPDRXuNIrFMhYo2N5hGw4z8+06i+fjrO root@web"
    status, _ = raw(endpoint, "POST", "/paranix/console-host-key", json.dumps({"instance_id": iid, "public_key": mine}).encode())
    ok(status == 200 and console_block(ec2, iid) == [mine], "POST /paranix/console-host-key sets the key")
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJFzgips94nJNoR4QumiyqlJoSlZ48P+NVrd7zgD5k4T root@byname"
    raw(endpoint, "POST", "/paranix/console-host-key", json.dumps({"tag": {"Key": "Name", "Value": "web"}, "public_key": other}).encode())
    ok(console_block(ec2, iid) == [mine], "an instance's own key wins over a tag rule")
    status, body = raw(endpoint, "POST", "/paranix/console-host-key", json.dumps({"instance_id": iid, "public_key": "ssh-ed25519 AAAAbroken"}).encode())
    ok(status == 400, f"a malformed key is refused: {body!r}")
    ok(error_code(ec2.get_console_output, InstanceId="i-0123456789abcdef0") == "InvalidInstanceID.NotFound",
       "GetConsoleOutput of an unknown instance: InvalidInstanceID.NotFound")


def check_ebs_direct(c) -> None:
    ebs, ec2 = c["ebs"], c["ec2"]
    volumes_before = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    s = ebs.start_snapshot(VolumeSize=1, Description="direct", Encrypted=True, Tags=[{"Key": "paranix", "Value": "d"}])
    ok(s["BlockSize"] == 524288 and s["Status"] == "pending", f"StartSnapshot BlockSize 524288, pending: {s['BlockSize']}")
    ok(ec2.describe_snapshots(SnapshotIds=[s["SnapshotId"]])["Snapshots"][0]["State"] == "pending",
       "EC2 snapshot pending until CompleteSnapshot")
    block = b"\1" * 524288
    ebs.put_snapshot_block(SnapshotId=s["SnapshotId"], BlockIndex=0, BlockData=block, DataLength=len(block),
                           Checksum=base64.b64encode(hashlib.sha256(block).digest()).decode(), ChecksumAlgorithm="SHA256")
    ebs.complete_snapshot(SnapshotId=s["SnapshotId"], ChangedBlocksCount=1)
    snap = ec2.describe_snapshots(SnapshotIds=[s["SnapshotId"]])["Snapshots"][0]
    ok(snap["State"] == "completed" and snap["Encrypted"] is True and snap["VolumeId"] == "vol-ffffffff",
       f"after CompleteSnapshot: completed, encrypted, vol-ffffffff: {snap['State']}, {snap['Encrypted']}")
    ok({v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]} == volumes_before, "no phantom volume")


def check_iam(c) -> None:
    iam = c["iam"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="web", AssumeRolePolicyDocument=trust, Tags=[{"Key": "a", "Value": "1"}])
    iam.update_role(RoleName="web", Description="d")
    iam.update_assume_role_policy(RoleName="web", PolicyDocument=trust)
    iam.tag_role(RoleName="web", Tags=[{"Key": "b", "Value": "2"}])
    iam.untag_role(RoleName="web", TagKeys=["a"])
    ok(iam.list_role_tags(RoleName="web")["Tags"] == [{"Key": "b", "Value": "2"}], "TagRole/UntagRole/ListRoleTags")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    iam.put_role_policy(RoleName="web", PolicyName="p", PolicyDocument=policy)
    ok(iam.list_role_policies(RoleName="web")["PolicyNames"] == ["p"]
       and iam.get_role_policy(RoleName="web", PolicyName="p")["PolicyDocument"]["Statement"][0]["Action"] == "s3:GetObject",
       "PutRolePolicy/GetRolePolicy/ListRolePolicies")
    iam.delete_role_policy(RoleName="web", PolicyName="p")
    iam.delete_role(RoleName="web")
    ok(error_code(iam.get_role, RoleName="web") == "NoSuchEntity", "DeleteRole, then GetRole: NoSuchEntity")


def check_reset(endpoint: str, c) -> None:
    _, before = raw(endpoint, "GET", "/paranix/requests")
    ok(json.loads(before)["count"] > 0, f"GET /paranix/requests counts AWS requests: {before!r}")
    raw(endpoint, "POST", "/moto-api/reset")
    _, after = raw(endpoint, "GET", "/paranix/requests")
    ok(json.loads(after)["count"] == 0, "reset zeroes the request count")
    ok(c["ec2"].describe_import_snapshot_tasks()["ImportSnapshotTasks"] == [], "reset clears import tasks")
    ok(c["s3"].list_buckets()["Buckets"] == [], "reset clears S3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint")
    args = parser.parse_args()
    child = None
    endpoint = args.endpoint
    if endpoint is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        child = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "..", "sdk", "moto", "paranix_moto.py"), "--host", "127.0.0.1",
                                  "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if raw(endpoint, "GET", "/paranix/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
    try:
        raw(endpoint, "POST", "/moto-api/reset")
        c = clients(endpoint)
        check_s3(endpoint, c["s3"])
        check_iam(c)
        snapshot_id = check_import_snapshot(endpoint, c)
        check_images_and_instances(c, snapshot_id)
        check_ebs_direct(c)
        ok(not problems, "raw EC2/IAM XML matches the output shapes" + "".join(f"\n     {p}" for p in problems))
        check_reset(endpoint, c)
        print("all checks passed")
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=10)


if __name__ == "__main__":
    main()
