// A minimal server on cpp-httplib, configured as attendance-proxy 0.2.0 was (16 worker
// threads, 10 s read timeout, 5 s keep-alive). It reads each request's body completely
// and answers 404 with a small JSON body: bench/http_probe.py compares the HTTP
// libraries on exactly that. Not part of the product.
//   probe_httplib PORT
// Debian's libcpp-httplib.so was built with these; they change the layout of its types.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#include <httplib.h>

#include <csignal>
#include <cstdlib>
#include <thread>

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    httplib::Server server;
    server.new_task_queue = [] { return new httplib::ThreadPool(16); };
    server.set_read_timeout(10, 0);
    server.set_keep_alive_timeout(5);
    server.set_tcp_nodelay(true);
    server.Post(".*", [](const httplib::Request&, httplib::Response& res) {
        res.status = 404;
        res.set_content("{\"error\": \"not found\", \"sqlstate\": null}\n", "application/json");
    });
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&set, &sig);
        server.stop();
    });
    server.listen("127.0.0.1", std::atoi(argv[1]));
    stopper.join();
    return 0;
}
