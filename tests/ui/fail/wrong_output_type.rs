// An S3 bucket's ARN wired in where the host needs an AMI id.
use paranix::prelude::*;

#[paranix::host(instance_type = "t3.micro", configuration = "tests/ui/hosts/web.nix")]
struct Web {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {
    let mut stack = Stack::new("web");
    let bucket = stack.add(s3::Bucket::new("images").bucket("web-images"));
    let key = stack.add(ec2::KeyPair::generate("deployer"));
    stack.add_host(Web { ami: bucket.arn(), key_name: key.key_name(), security_groups: vec![] });
}
