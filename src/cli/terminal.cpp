#include "cli/terminal.hpp"

#include "cli/cli.hpp"

#include <signal.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

namespace attendancectl {

namespace {

volatile sig_atomic_t g_interrupted = 0;

void on_signal(int) { g_interrupted = 1; }

}  // namespace

void catch_interrupts() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = &on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a sleep returns at once
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

bool interrupted() { return g_interrupted != 0; }

bool sleep_unless_interrupted(double seconds) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const double deadline = static_cast<double>(now.tv_sec) + now.tv_nsec / 1e9 + seconds;
    while (!interrupted()) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        const double left = deadline - (static_cast<double>(now.tv_sec) + now.tv_nsec / 1e9);
        if (left <= 0) return true;
        const double step = left < 0.1 ? left : 0.1;
        struct timespec ts;
        ts.tv_sec = 0;
        ts.tv_nsec = static_cast<long>(step * 1e9);
        nanosleep(&ts, nullptr);
    }
    return false;
}

std::string read_secret(const std::string& prompt) {
    const bool tty = isatty(STDIN_FILENO) != 0;
    struct termios saved;
    bool echo_off = false;
    if (tty) {
        std::fputs(prompt.c_str(), stderr);
        std::fflush(stderr);
        if (tcgetattr(STDIN_FILENO, &saved) == 0) {
            struct termios quiet = saved;
            quiet.c_lflag &= static_cast<tcflag_t>(~ECHO);
            echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
        }
    }
    std::string line;
    std::getline(std::cin, line);
    if (echo_off) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        std::fputs("\n", stderr);
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    return line;
}

std::string read_file(const std::string& path) {
    if (path == "-") {
        std::ostringstream all;
        all << std::cin.rdbuf();
        return all.str();
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError("cannot read " + path + ": " + std::strerror(errno));
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw InputError("cannot read " + path + ": " + std::strerror(errno));
    return data;
}

}  // namespace attendancectl
