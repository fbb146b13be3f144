// Settings (GUCs) of the extension; documented in docs/configuration.md.
#pragma once

#include "pg/pg.hpp"

namespace attendance::pg {

struct Settings {
    bool development_mode = false;
    bool replay_mode = false;
    int token_leeway_s = 60;
    int max_body_bytes = 1024 * 1024;
    int max_json_depth = 64;
    char* identity_pattern = nullptr;
    char* room_pattern = nullptr;
    int webhook_log_level = LOG;
};

extern Settings settings;

void define_settings();
void register_worker_if_preloaded();  // worker.cpp
void wake_worker_at_commit();         // worker.cpp

}  // namespace attendance::pg
