// AWS credentials as the AWS CLI and SDKs find them: AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the environment first, then the profile
// (AWS_PROFILE, else "default") of the shared credentials file (AWS_SHARED_CREDENTIALS_FILE,
// else ~/.aws/credentials). Errors name the file and line; secrets never appear in them.
// Any thread (reads the environment and files only).
#pragma once

#include <string>

#include "common/result.h"
#include "storage/sigv4.h"

namespace hylab::storage {

// `profile` empty: AWS_PROFILE or "default". A named `profile` skips the environment's keys,
// as botocore does. Not finding any credentials is an error that says where it looked.
Result<Credentials> load_credentials(const std::string& profile = "");

// Parses an INI-style credentials file's text; `file` is used in messages only.
Result<Credentials> parse_credentials_file(const std::string& text, const std::string& file,
                                           const std::string& profile);

}  // namespace hylab::storage
