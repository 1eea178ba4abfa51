#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace hylab::store {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("hylab-store-" + std::to_string(::getpid()) + ".db"))
                .string();
    Remove();
  }
  void TearDown() override { Remove(); }
  void Remove() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + suffix);
  }
  static JobRecord job(const std::string& name, int priority = 0) {
    JobRecord j;
    j.name = name;
    j.spec = "run: echo " + name;
    j.state = JobState::kQueued;
    j.environment = "local";
    j.rule = "development";
    j.decision = "{}";
    j.priority = priority;
    j.created_at = 1000;
    return j;
  }
  std::string path_;
};

TEST_F(StoreTest, MigratesAFreshDatabaseAndReopens) {
  {
    auto s = Store::open(path_);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ((*s)->schema_version(), 5);
    ASSERT_TRUE((*s)->insert_job(job("a")));
  }
  auto again = Store::open(path_);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->schema_version(), 5);
  EXPECT_EQ((*again)->get_job(1)->name, "a");
}

// A state database written by the first schema (before cloud targets) keeps its jobs and
// gains the cloud columns (schemas 2 and 3).
TEST_F(StoreTest, MigratesAVersionOneDatabase) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    const char* v1 =
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, spec TEXT "
        "NOT NULL, spec_file TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, environment TEXT NOT "
        "NULL, rule TEXT NOT NULL, spot INTEGER NOT NULL DEFAULT 0, decision TEXT NOT NULL, "
        "reason TEXT NOT NULL DEFAULT '', priority INTEGER NOT NULL DEFAULT 0, gpus TEXT NOT NULL "
        "DEFAULT '[]', pid INTEGER, pid_start INTEGER, pgid INTEGER, exit_code INTEGER, signal "
        "INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, "
        "queued_at REAL, started_at REAL, ended_at REAL, job_dir TEXT NOT NULL DEFAULT '', workdir "
        "TEXT NOT NULL DEFAULT ''); CREATE INDEX jobs_by_state ON jobs(state, environment, id); "
        "INSERT INTO jobs (name, spec, state, environment, rule, decision, created_at) VALUES "
        "('old', 'run: x', 'succeeded', 'local', 'r', '{}', 5); PRAGMA user_version=1;";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = Store::open(path_);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ((*s)->schema_version(), 5);
  auto old = (*s)->get_job(1);
  ASSERT_TRUE(old);
  EXPECT_EQ(old->name, "old");
  EXPECT_EQ(old->target, "");
  EXPECT_EQ(old->restarts, 0);
  EXPECT_FALSE(old->cost_usd);
  old->target = "aws-pc";
  old->remote_id = "1234";
  old->restarts = 2;
  old->cost_usd = 12.5;
  ASSERT_TRUE((*s)->update_job(*old));
  auto back = (*s)->get_job(1);
  EXPECT_EQ(back->target, "aws-pc");
  EXPECT_EQ(back->remote_id, "1234");
  EXPECT_EQ(back->restarts, 2);
  EXPECT_EQ(back->cost_usd, 12.5);
  EXPECT_FALSE(back->outputs_bytes);
  back->spot = true;  // a spot job falling back to on-demand changes this
  back->cost_prior_usd = 2.25;
  back->segment_start = 1700000000;
  back->outputs_bytes = 4096;
  back->outputs_files = 3;
  back->started_at = 100;
  back->ended_at = 200;
  ASSERT_TRUE((*s)->update_job(*back));
  auto again = (*s)->get_job(1);
  EXPECT_TRUE(again->spot);
  EXPECT_EQ(again->cost_prior_usd, 2.25);
  EXPECT_EQ(again->segment_start, 1700000000);
  EXPECT_EQ(again->outputs_bytes, 4096);
  EXPECT_EQ(again->outputs_files, 3);
  EXPECT_EQ((*s)->jobs_active_since(150)->size(), 1U);
  EXPECT_EQ((*s)->jobs_active_since(201)->size(), 0U);
}

TEST_F(StoreTest, RefusesADatabaseFromANewerHylab) {
  { ASSERT_TRUE(Store::open(path_)); }
  sqlite3* db = nullptr;
  sqlite3_open(path_.c_str(), &db);
  sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto s = Store::open(path_);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("schema version 99, newer than this hylab knows (5)"),
            std::string::npos);
}

TEST_F(StoreTest, UsesWalMode) {
  { ASSERT_TRUE(Store::open(path_)); }
  sqlite3* db = nullptr;
  sqlite3_open(path_.c_str(), &db);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(StoreTest, UpdateListFilterAndQueueOrder) {
  auto s = Store::open(path_);
  ASSERT_TRUE(s);
  Store& st = **s;
  ASSERT_EQ(*st.insert_job(job("low")), 1);
  ASSERT_EQ(*st.insert_job(job("high", 5)), 2);
  ASSERT_EQ(*st.insert_job(job("low2")), 3);
  auto queue = st.jobs_in_state(JobState::kQueued);
  ASSERT_TRUE(queue);
  ASSERT_EQ(queue->size(), 3u);
  EXPECT_EQ((*queue)[0].name, "high");
  EXPECT_EQ((*queue)[1].name, "low");
  EXPECT_EQ((*queue)[2].name, "low2");

  JobRecord j = *st.get_job(1);
  j.state = JobState::kSucceeded;
  j.exit_code = 0;
  j.pid = 4242;
  j.started_at = 1001.5;
  j.ended_at = 1002.25;
  ASSERT_TRUE(st.update_job(j));
  JobRecord back = *st.get_job(1);
  EXPECT_EQ(back.state, JobState::kSucceeded);
  EXPECT_EQ(back.exit_code, 0);
  EXPECT_EQ(back.pid, 4242);
  EXPECT_DOUBLE_EQ(*back.ended_at, 1002.25);
  EXPECT_FALSE(back.signal.has_value());

  JobFilter f;
  f.state = JobState::kQueued;
  EXPECT_EQ(st.list_jobs(f)->size(), 2u);
  JobFilter page;
  page.after_id = 1;
  page.limit = 1;
  auto p = st.list_jobs(page);
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0].id, 2);
  EXPECT_EQ(st.get_job(99).error().code, Errc::kNotFound);
  JobRecord ghost = job("ghost");
  ghost.id = 77;
  EXPECT_FALSE(st.update_job(ghost));
}

TEST(JobStates, NamesAndTerminality) {
  for (auto s : {JobState::kPending, JobState::kQueued, JobState::kRunning, JobState::kSucceeded,
                 JobState::kFailed, JobState::kCancelled, JobState::kLost}) {
    EXPECT_EQ(job_state_from(to_string(s)), s);
  }
  EXPECT_FALSE(job_state_from("done"));
  EXPECT_TRUE(is_terminal(JobState::kLost));
  EXPECT_FALSE(is_terminal(JobState::kRunning));
}

TEST_F(StoreTest, DatabaseIsPrivateWhateverTheUmaskAndIsNarrowedWhenWider) {
  auto mode = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? st.st_mode & 0777 : 01000;
  };
  mode_t old = ::umask(0);  // SQLite alone would create 0644 & ~umask: here 0644
  {
    auto s = Store::open(path_);
    ::umask(old);
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE((*s)->insert_job(job("a")));  // a write, so the -wal and -shm files exist
    EXPECT_EQ(mode(path_), 0600u);
    EXPECT_EQ(mode(path_ + "-wal"), 0600u);
    EXPECT_EQ(mode(path_ + "-shm"), 0600u);
  }
  // As an older hylab left it: readable by everyone.
  for (const char* suffix : {"", "-wal", "-shm"}) ::chmod((path_ + suffix).c_str(), 0644);
  auto again = Store::open(path_);
  ASSERT_TRUE(again);
  EXPECT_EQ(mode(path_), 0600u);
  EXPECT_EQ((*again)->get_job(1)->name, "a");
  for (const char* suffix : {"-wal", "-shm"}) {
    if (std::filesystem::exists(path_ + suffix)) {
      EXPECT_EQ(mode(path_ + suffix), 0600u) << suffix;
    }
  }
}

}  // namespace
}  // namespace hylab::store
