// Command-line flags and environment variables of attendance-proxy. Precedence:
// flag > environment variable > built-in default. Pure: no I/O, testable.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace attendance::proxy {

enum class LogFormat { Text, Json };

struct Config {
    std::string listen = "127.0.0.1";
    int port = 8080;
    std::string path = "/webhooks/livekit";
    std::string conninfo;  // empty: libpq's PG* environment variables and service files
    int threads = 2;       // I/O threads: they only move bytes, never wait for the database
    int pool_size = 8;
    std::size_t max_body_bytes = 1024 * 1024;
    int pool_timeout_ms = 5000;
    int connect_timeout_s = 5;
    int statement_timeout_ms = 10000;
    int read_timeout_s = 10;  // total time to receive one request, headers and body
    int max_connections = 10000;
    int write_timeout_s = 10;
    int keepalive_timeout_s = 5;
    int retry_after_s = 2;
    LogFormat log_format = LogFormat::Text;
};

struct ParseResult {
    std::optional<Config> config;  // set when the arguments were valid
    std::string error;             // set when they were not
    bool help = false;             // --help: print usage() and exit 0
    bool version = false;          // --version
};

// Looks up an environment variable; returns nullptr when unset.
using EnvLookup = std::function<const char*(const char*)>;

// args excludes argv[0]. Accepts "--flag value" and "--flag=value".
ParseResult parse_config(const std::vector<std::string>& args, const EnvLookup& env);

// The --help text: every flag, its environment variable and its default.
std::string usage();

const char* to_string(LogFormat f);

}  // namespace attendance::proxy
