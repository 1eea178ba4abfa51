#include "server/serve.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/connection_table.h"
#include "exec/local/executor.h"
#include "exec/router.h"
#include "exec/slurm/executor.h"
#include "server/api.h"
#include "server/http_server.h"
#include "store/store.h"

namespace hylab::server {

namespace asio = boost::asio;

std::string token_path(const std::string& state_dir) { return state_dir + "/token"; }
std::string server_info_path(const std::string& state_dir) { return state_dir + "/server.json"; }

namespace {

// The token: created once, 0600, never printed.
Result<std::string> load_or_create_token(const std::string& path) {
  auto existing = read_text_file(path, 4096);
  if (existing) {
    std::string t = *existing;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    if (t.size() < 32)
      return Error{
          Errc::kInvalidInput,
          fmt::format("{}: the token is too short; delete the file to make a new one", path)};
    return t;
  }
  std::string token = generate_token();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return Error{Errc::kIo, fmt::format("cannot create {}: {}", path, std::strerror(errno))};
  std::string line = token + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::fsync(fd);
  ::close(fd);
  if (!ok) return Error{Errc::kIo, fmt::format("cannot write {}", path)};
  return token;
}

// This state directory's mark on the jobs it hands to a cluster: made once, not a secret.
std::string load_or_create_instance(const std::string& path) {
  if (auto existing = read_text_file(path, 256)) {
    std::string id = *existing;
    while (!id.empty() && (id.back() == '\n' || id.back() == '\r')) id.pop_back();
    if (!id.empty() && id.find_first_not_of("0123456789abcdef") == std::string::npos) return id;
  }
  std::string id = generate_token().substr(0, 12);
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << id << "\n";
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return id;
}

void write_info(const std::string& path, const std::string& url) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << boost::json::serialize(
             boost::json::object{{"url", url}, {"pid", static_cast<std::int64_t>(::getpid())}})
      << "\n";
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

int run_serve(const Config& cfg, const ServeOptions& opts, std::ostream& out, std::ostream& err) {
  const std::string dir = state_dir_of(cfg.server);
  std::error_code fec;
  std::filesystem::create_directories(dir, fec);
  if (fec) {
    err << fmt::format("error: cannot create the state directory {}: {}\n", dir, fec.message());
    return 1;
  }
  ::chmod(dir.c_str(), 0700);
  int lock_fd = ::open((dir + "/serve.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    err << fmt::format("error: another hylab serve is using {} (its lock is held); stop it first\n",
                       dir);
    return 1;
  }
  auto token = load_or_create_token(token_path(dir));
  if (!token) {
    err << "error: " << token.error().message << "\n";
    return 1;
  }
  auto store = store::Store::open(dir + "/hylab.db");
  if (!store) {
    err << "error: " << store.error().message << "\n";
    return 1;
  }

  std::string listen = opts.listen.value_or(cfg.server.listen);
  auto colon = listen.rfind(':');
  HttpServerOptions hopts;
  std::string port_text = colon == std::string::npos ? "" : listen.substr(colon + 1);
  if (colon == std::string::npos || colon == 0 || port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    err << fmt::format("error: --listen expects host:port such as 127.0.0.1:7460, got '{}'\n",
                       listen);
    return 2;
  }
  hopts.host = listen.substr(0, colon);
  if (hopts.host.size() > 2 && hopts.host.front() == '[' && hopts.host.back() == ']') {
    hopts.host = hopts.host.substr(1, hopts.host.size() - 2);
  }
  hopts.port = static_cast<std::uint16_t>(std::stoi(port_text));
  hopts.tls_cert = cfg.server.tls_cert;
  hopts.tls_key = cfg.server.tls_key;
  hopts.max_body_bytes = cfg.server.max_body_bytes;
  hopts.read_timeout_seconds = cfg.server.read_timeout_seconds;
  hopts.write_timeout_seconds = cfg.server.write_timeout_seconds;
  hopts.idle_timeout_seconds = cfg.server.idle_timeout_seconds;
  hopts.max_connections = cfg.server.max_connections;
  raise_open_files_limit();

  asio::io_context ioc;
  exec::local::Options eopts;
  eopts.jobs_dir = dir + "/jobs";
  eopts.log_max_bytes = cfg.server.log_max_bytes;
  eopts.cancel_grace_seconds = cfg.server.cancel_grace_seconds;
  eopts.use_nvml = opts.use_nvml;
  exec::local::LocalExecutor local(ioc, **store, cfg, eopts);
  exec::slurm::Options sopts;
  sopts.jobs_dir = dir + "/jobs";
  sopts.instance = load_or_create_instance(dir + "/instance");
  exec::slurm::SlurmExecutor cloud(ioc, **store, cfg, sopts);
  exec::Router executor(ioc, **store, local, cloud);
  executor.recover();

  Api api(cfg, **store, executor, *token);
  HttpServer http(ioc, hopts, [&api](const HttpRequest& r) { return api.handle(r); });
  auto port = http.start();
  if (!port) {
    err << "error: " << port.error().message << "\n";
    return 1;
  }
  std::string scheme = hopts.tls_cert.empty() ? "http" : "https";
  std::string host =
      hopts.host.find(':') != std::string::npos ? "[" + hopts.host + "]" : hopts.host;
  std::string url = fmt::format("{}://{}:{}", scheme, host, *port);
  api.set_url(url);
  write_info(server_info_path(dir), url);

  auto inv = executor.inventory();
  out << fmt::format("hylab serve: listening on {}\n", url) << fmt::format("  state:     {}\n", dir)
      << fmt::format("  token:     {} (clients read it from there)\n", token_path(dir))
      << fmt::format("  GPUs:      {} from {} ({})\n", inv.gpus.size(), inv.source, inv.detail)
      << fmt::format("  try:       {} run examples/jobs/hello-gpu.yaml --follow{}\n", opts.exe,
                     cfg.source.empty() || cfg.source[0] == '(' ? "" : " --config " + cfg.source)
      << std::flush;

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    out << fmt::format(
               "hylab serve: {} received, stopping; running jobs keep running and are adopted at "
               "the next start\n",
               sig == SIGTERM ? "SIGTERM" : "SIGINT")
        << std::flush;
    http.stop();
    std::filesystem::remove(server_info_path(dir), fec);
    ioc.stop();
  });
  ioc.run();
  return 0;
}

}  // namespace hylab::server
