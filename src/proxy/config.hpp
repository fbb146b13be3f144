// Command-line flags and environment variables of attendance-proxy, parsed with CLI11.
// Precedence: flag > environment variable > built-in default. No I/O but reading the
// environment: testable.
#pragma once

#include "core/version.hpp"
#include "proxy/sources.hpp"

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
    int max_connections_per_source = 1000;  // 0: no per-source limit
    std::string trusted_sources;            // as given; parsed into `trusted`
    std::vector<Cidr> trusted;              // exempt from the per-source limits
    double reject_rate = 10;                // rejected requests per second per source; 0: off
    int reject_burst = 100;
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

inline constexpr const char* kProxyVersion = attendance::kVersion;

// args excludes argv[0]. Accepts "--flag value" and "--flag=value"; the environment
// variables are read from the process environment.
ParseResult parse_config(const std::vector<std::string>& args);

// The --help text: every flag, its environment variable and its default.
std::string usage();

const char* to_string(LogFormat f);

}  // namespace attendance::proxy
