// A minimal server on libmicrohttpd, configured as attendance-proxy would be (epoll,
// a thread pool, a per-connection timeout, a connection cap). It reads each request's
// body completely and answers 404 with a small JSON body, as attendance-proxy does for
// a path it does not serve: bench/http_probe.py compares the HTTP libraries on exactly
// that. Not part of the product.
//   probe_mhd PORT
#include <microhttpd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

namespace {

MHD_Result on_request(void*, MHD_Connection* c, const char*, const char*, const char*, const char*,
                      size_t* upload_size, void** state) {
    if (*state == nullptr) {  // headers done; the body follows in further calls
        *state = reinterpret_cast<void*>(1);
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0;  // consumed
        return MHD_YES;
    }
    static const char kBody[] = "{\"error\": \"not found\", \"sqlstate\": null}\n";
    MHD_Response* r = MHD_create_response_from_buffer(sizeof kBody - 1, const_cast<char*>(kBody),
                                                      MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_Result ret = MHD_queue_response(c, 404, r);
    MHD_destroy_response(r);
    return ret;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    const unsigned port = static_cast<unsigned>(std::atoi(argv[1]));
    MHD_Daemon* d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, static_cast<uint16_t>(port), nullptr,
        nullptr, &on_request, nullptr, MHD_OPTION_THREAD_POOL_SIZE, 2u,
        MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_CONNECTION_LIMIT, 10000u,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u, MHD_OPTION_END);
    if (d == nullptr) {
        std::fprintf(stderr, "probe_mhd: cannot start\n");
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    int sig = 0;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
