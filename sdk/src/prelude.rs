//! The types nearly every program uses: `use paranix::prelude::*;`.

pub use crate::aws::{ebs, ec2, iam, s3};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::plan::{Action, Plan, ProjectPlan};
pub use crate::resource::{Handle, Resource, ResourceExt};
pub use crate::stack::{Backend, OutputKey, Project, RemoteState, Stack};
pub use crate::value::{
    Arn, BucketName, Digest, HostAddress, ImageId, InstanceId, KeyName, ObjectKey, Output, PublicKey, RoleName,
    SecurityGroupId, SnapshotId, StorePath, Value,
};
