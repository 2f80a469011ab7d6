#!/usr/bin/env bash
# The Kubernetes half of a deploy, from inside the VPC: upload this checkout to the stack's deployer bucket, start
# its CodeBuild project (infra/aws/deployer.py) on that source, follow the build, and fail when it fails.
# Needs PROJECT and BUCKET (the stack outputs deployer_project and deployer_source_bucket) and PULUMI_BACKEND_URL;
# AWS credentials with s3:PutObject on the bucket and codebuild:StartBuild/BatchGetBuilds on the project.
# Flags: `aws codebuild start-build help`, `aws codebuild batch-get-builds help`.
set -euo pipefail

: "${PROJECT:?deployer_project output missing: did the AWS half run?}"
: "${BUCKET:?deployer_source_bucket output missing: did the AWS half run?}"
: "${PULUMI_BACKEND_URL:?set the environment variable PULUMI_BACKEND_URL (e.g. s3://acme-pulumi-state)}"
POLL_SECONDS="${POLL_SECONDS:-30}"

key="${GITHUB_SHA:-$(git rev-parse HEAD)}.zip"
archive="$(mktemp -d)/source.zip"
git archive --format=zip --output "$archive" HEAD  # tracked files only: no virtualenvs, no local state
aws s3 cp --only-show-errors "$archive" "s3://${BUCKET}/${key}"

overrides="$(jq -nc --arg url "$PULUMI_BACKEND_URL" '[{name: "PULUMI_BACKEND_URL", value: $url, type: "PLAINTEXT"}]')"
build_id="$(aws codebuild start-build --project-name "$PROJECT" --source-location-override "${BUCKET}/${key}" \
  --environment-variables-override "$overrides" --query build.id --output text)"
echo "started CodeBuild build ${build_id} (logs: CloudWatch group /aws/codebuild/${PROJECT})"

while true; do
  status="$(aws codebuild batch-get-builds --ids "$build_id" --query 'builds[0].buildStatus' --output text)"
  case "$status" in
    IN_PROGRESS) sleep "$POLL_SECONDS" ;;
    SUCCEEDED) echo "build ${build_id} succeeded"; exit 0 ;;
    *) echo "::error::CodeBuild build ${build_id} ended ${status}; see /aws/codebuild/${PROJECT} in CloudWatch Logs"
       exit 1 ;;
  esac
done
