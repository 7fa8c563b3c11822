// A scripted FIX 4.4 initiator built on QuickFIX, used as an independent counterpart in the
// exchange's interoperability tests.
//
// The point of this program is that the session layer on the client side is QuickFIX's own,
// unmodified: logon, heartbeats, test requests, sequence numbers, resend requests, gap fills and
// logout are all decided by the library under its standard settings. This file only chooses which
// application messages to send and when, and reports everything that crosses the wire, so a test
// written in Rust can drive it through stdin and assert on its stdout.
//
// Usage and the scenario language are described in README.md next to this file and in usage()
// below. Output lines (one per event, flushed immediately):
//   recv <msg>        every message read from the socket, before QuickFIX's session checks
//   accepted <34> <35> a received message passed QuickFIX's session checks and reached the
//                     application callbacks (fromAdmin / fromApp)
//   sent <msg>        every message written to the socket, including QuickFIX's own resends
//   event <text>      QuickFIX's session events (e.g. "MsgSeqNum too high, expecting 3 ...")
//   status <state>    logged-on / logged-out, reported by the application callbacks
//   ok <command>      a scenario command completed
//   fail <reason>     a scenario command failed; the program then exits with status 1
//   echo <text>       output of the echo command
// Messages are printed with '|' in place of the SOH delimiter.

#include <quickfix/Application.h>
#include <quickfix/FieldConvertors.h>
#include <quickfix/FileStore.h>
#include <quickfix/Log.h>
#include <quickfix/Message.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

// A message as a flat list of (tag, value) pairs in wire order. Matching works on this form
// rather than on QuickFIX's field maps, because without a data dictionary QuickFIX cannot place
// repeating-group fields, and a flat list lets a pattern see every occurrence of a tag.
typedef std::vector<std::pair<std::string, std::string> > Fields;

std::string printable(const std::string& raw) {
  std::string out(raw);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\x01') out[i] = '|';
  }
  // A trailing delimiter carries no information and makes transcripts harder to read.
  if (!out.empty() && out[out.size() - 1] == '|') out.erase(out.size() - 1);
  return out;
}

// Splits "a=1|b=2" (or the same with SOH delimiters) into pairs. Items without '=' are kept with
// an empty value so that pattern syntax such as "!58" survives the split.
Fields split_fields(const std::string& text) {
  Fields fields;
  std::string item;
  std::stringstream stream(printable(text));
  while (std::getline(stream, item, '|')) {
    if (item.empty()) continue;
    size_t eq = item.find('=');
    size_t tilde = item.find('~');
    if (tilde != std::string::npos && (eq == std::string::npos || tilde < eq)) {
      // "58~text" is a containment pattern; keep the operator with the value.
      fields.push_back(std::make_pair(item.substr(0, tilde), item.substr(tilde)));
    } else if (eq == std::string::npos) {
      fields.push_back(std::make_pair(item, std::string()));
    } else {
      fields.push_back(std::make_pair(item.substr(0, eq), "=" + item.substr(eq + 1)));
    }
  }
  return fields;
}

// The value of the first occurrence of a tag, or "" when the tag is absent.
std::string field_value(const Fields& fields, const std::string& tag) {
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].first == tag && !fields[i].second.empty()) return fields[i].second.substr(1);
  }
  return std::string();
}

// One recorded message (or event) and whether an expect command has already claimed it.
struct Entry {
  std::string text;
  Fields fields;
  bool consumed;
};

enum Stream { ACCEPTED, WIRE, SENT, EVENTS };

const char* stream_name(Stream stream) {
  switch (stream) {
    case ACCEPTED: return "accepted";
    case WIRE: return "received";
    case SENT: return "sent";
    case EVENTS: return "event";
  }
  return "?";
}

// Everything the QuickFIX threads report, shared with the scenario thread. A single mutex and
// condition variable keep the printed transcript in the order things happened and let expect
// commands wait without polling.
class Recorder {
 public:
  Recorder() : logged_on_(false), logons_(0), logouts_(0) {}

  void record(Stream stream, const std::string& raw, const char* prefix) {
    std::lock_guard<std::mutex> lock(mutex_);
    Entry entry;
    entry.text = printable(raw);
    entry.fields = split_fields(raw);
    entry.consumed = false;
    if (stream == ACCEPTED) {
      std::cout << prefix << ' ' << field_value(entry.fields, "34") << ' '
                << field_value(entry.fields, "35") << std::endl;
    } else {
      std::cout << prefix << ' ' << entry.text << std::endl;
    }
    streams_[stream].push_back(entry);
    changed_.notify_all();
  }

  void set_logged_on(bool on) {
    std::lock_guard<std::mutex> lock(mutex_);
    logged_on_ = on;
    if (on) ++logons_; else ++logouts_;
    std::cout << "status " << (on ? "logged-on" : "logged-out") << std::endl;
    changed_.notify_all();
  }

  void say(const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::cout << line << std::endl;
  }

  bool logged_on() {
    std::lock_guard<std::mutex> lock(mutex_);
    return logged_on_;
  }

  int logons() {
    std::lock_guard<std::mutex> lock(mutex_);
    return logons_;
  }

  int logouts() {
    std::lock_guard<std::mutex> lock(mutex_);
    return logouts_;
  }

  // Waits until the session is (or is no longer) logged on and the matching callback count has
  // moved past `seen`, so that a logon which happened before the command started is not mistaken
  // for the one the command asked for.
  bool wait_logged(bool on, int seen, double seconds) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, to_duration(seconds), [&] {
      return logged_on_ == on && (on ? logons_ : logouts_) > seen;
    });
  }

  // Waits for an unclaimed entry of the stream that matches the pattern, claims it and binds the
  // pattern's new variables. Entries that do not match stay unclaimed for later commands, so the
  // order in which a scenario expects messages need not be the order in which they arrive.
  bool expect(Stream stream, const Fields& pattern, std::map<std::string, std::string>& vars,
              double seconds, std::string& matched) {
    std::unique_lock<std::mutex> lock(mutex_);
    bool found = false;
    changed_.wait_for(lock, to_duration(seconds), [&] {
      std::vector<Entry>& entries = streams_[stream];
      for (size_t i = 0; i < entries.size(); ++i) {
        if (entries[i].consumed) continue;
        std::map<std::string, std::string> bound(vars);
        if (stream == EVENTS ? contains(entries[i].text, pattern)
                             : matches(entries[i].fields, pattern, bound)) {
          entries[i].consumed = true;
          vars.swap(bound);
          matched = entries[i].text;
          found = true;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  // Reports whether any entry so far (claimed or not) matches; used by the "none" commands.
  bool any(Stream stream, const Fields& pattern, const std::map<std::string, std::string>& vars,
           std::string& matched) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Entry>& entries = streams_[stream];
    for (size_t i = 0; i < entries.size(); ++i) {
      std::map<std::string, std::string> bound(vars);
      if (matches(entries[i].fields, pattern, bound)) {
        matched = entries[i].text;
        return true;
      }
    }
    return false;
  }

 private:
  static std::chrono::milliseconds to_duration(double seconds) {
    return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0));
  }

  static bool contains(const std::string& text, const Fields& pattern) {
    // For events the "pattern" is the whole text after the command, stored as one item.
    return !pattern.empty() && text.find(pattern[0].first) != std::string::npos;
  }

  // A pattern item is one of: "tag=value" (some occurrence of tag equals value), "tag=*" (tag is
  // present), "!tag" (tag is absent), "tag~text" (some occurrence contains text) and
  // "tag=$name" (equal to the variable if bound, otherwise tag must be present and its first
  // occurrence binds the variable).
  static bool matches(const Fields& fields, const Fields& pattern,
                      std::map<std::string, std::string>& vars) {
    for (size_t p = 0; p < pattern.size(); ++p) {
      const std::string& key = pattern[p].first;
      const std::string& op = pattern[p].second;
      if (!key.empty() && key[0] == '!') {
        if (has_tag(fields, key.substr(1))) return false;
        continue;
      }
      if (op.empty()) return false;
      std::string value = op.substr(1);
      if (op[0] == '~') {
        if (!any_value(fields, key, value, true)) return false;
      } else if (value == "*") {
        if (!has_tag(fields, key)) return false;
      } else if (!value.empty() && value[0] == '$') {
        std::map<std::string, std::string>::iterator var = vars.find(value.substr(1));
        if (var != vars.end()) {
          if (!any_value(fields, key, var->second, false)) return false;
        } else {
          if (!has_tag(fields, key)) return false;
          vars[value.substr(1)] = field_value(fields, key);
        }
      } else if (!any_value(fields, key, value, false)) {
        return false;
      }
    }
    return true;
  }

  static bool has_tag(const Fields& fields, const std::string& tag) {
    for (size_t i = 0; i < fields.size(); ++i) {
      if (fields[i].first == tag) return true;
    }
    return false;
  }

  static bool any_value(const Fields& fields, const std::string& tag, const std::string& value,
                        bool substring) {
    for (size_t i = 0; i < fields.size(); ++i) {
      if (fields[i].first != tag || fields[i].second.empty()) continue;
      const std::string actual = fields[i].second.substr(1);
      if (substring ? actual.find(value) != std::string::npos : actual == value) return true;
    }
    return false;
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<int, std::vector<Entry> > streams_;
  bool logged_on_;
  int logons_;
  int logouts_;
};

// QuickFIX hands every raw message in and out, and every session event, to a Log. Implementing
// one is the library's supported way to observe the wire, and it is the only way to see resent
// duplicates: QuickFIX drops a PossDup message whose sequence number it has already processed
// before any application callback runs.
class TranscriptLog : public FIX::Log {
 public:
  explicit TranscriptLog(Recorder& recorder) : recorder_(recorder) {}
  void clear() {}
  void backup() {}
  void onIncoming(const std::string& message) { recorder_.record(WIRE, message, "recv"); }
  void onOutgoing(const std::string& message) { recorder_.record(SENT, message, "sent"); }
  void onEvent(const std::string& text) { recorder_.record(EVENTS, text, "event"); }

 private:
  Recorder& recorder_;
};

class TranscriptLogFactory : public FIX::LogFactory {
 public:
  explicit TranscriptLogFactory(Recorder& recorder) : recorder_(recorder) {}
  FIX::Log* create() { return new TranscriptLog(recorder_); }
  FIX::Log* create(const FIX::SessionID&) { return new TranscriptLog(recorder_); }
  void destroy(FIX::Log* log) { delete log; }

 private:
  Recorder& recorder_;
};

// The application layer does as little as possible: it adds credentials to the Logon, records
// what QuickFIX delivers, and tracks the logon state. It never rejects anything, so whatever the
// exchange sends is judged by QuickFIX's session layer alone.
class ScriptedApplication : public FIX::Application {
 public:
  ScriptedApplication(Recorder& recorder, const std::string& username, const std::string& password)
      : recorder_(recorder), username_(username), password_(password) {}

  void onCreate(const FIX::SessionID&) {}
  void onLogon(const FIX::SessionID&) { recorder_.set_logged_on(true); }
  void onLogout(const FIX::SessionID&) { recorder_.set_logged_on(false); }

  void toAdmin(FIX::Message& message, const FIX::SessionID&) {
    // Credentials go in the Logon body (Username 553, Password 554), which is where FIX 4.4
    // defines them; QuickFIX leaves adding them to the application.
    if (message.getHeader().getField(FIX::FIELD::MsgType) == "A") {
      if (!username_.empty()) message.setField(FIX::FIELD::Username, username_);
      if (!password_.empty()) message.setField(FIX::FIELD::Password, password_);
    }
  }

  void toApp(FIX::Message&, const FIX::SessionID&) throw(FIX::DoNotSend) {}

  void fromAdmin(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::RejectLogon) {
    recorder_.record(ACCEPTED, message.toString(), "accepted");
  }

  void fromApp(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::UnsupportedMessageType) {
    recorder_.record(ACCEPTED, message.toString(), "accepted");
  }

 private:
  Recorder& recorder_;
  std::string username_;
  std::string password_;
};

struct Options {
  std::string host;
  int port;
  std::string sender;
  std::string target;
  std::string username;
  std::string password;
  std::string store;
  std::string dictionary;
  int heartbeat;
  bool reset_on_logon;
  double timeout;
  Options()
      : host("127.0.0.1"), port(9878), target("EXCHANGE"), heartbeat(30), reset_on_logon(false),
        timeout(10.0) {}
};

void usage() {
  std::cerr <<
      "usage: fix_client --sender ID --store DIR [--host H] [--port P] [--target ID]\n"
      "                  [--username U] [--password PW] [--heartbeat SECONDS]\n"
      "                  [--dictionary FIX44.xml]\n"
      "                  [--reset-on-logon Y|N] [--timeout SECONDS]  < scenario\n"
      "scenario commands, one per line ('#' starts a comment):\n"
      "  logon | connect | logout [text] | wait-logout | crash | quit\n"
      "  send TAG=VALUE|...         (header, body length and checksum are filled in;\n"
      "                              VALUE 'now' is the current UTCTimestamp, '$name' a variable)\n"
      "  expect PATTERN             (a message accepted by QuickFIX's session layer)\n"
      "  expect-wire PATTERN        (any message read from the socket)\n"
      "  expect-sent PATTERN        (any message QuickFIX wrote to the socket)\n"
      "  expect-event TEXT          (a QuickFIX session event containing TEXT)\n"
      "  none PATTERN | none-wire PATTERN | none-sent PATTERN\n"
      "  resend-request BEGIN END | gap N | timeout SECONDS | sleep MS | echo TEXT\n"
      "PATTERN items: tag=value  tag=*  !tag  tag~text  tag=$name\n";
}

bool parse_options(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg(argv[i]);
    if (arg == "--help" || arg == "-h") return false;
    if (i + 1 >= argc) {
      std::cerr << "fix_client: " << arg << " needs a value\n";
      return false;
    }
    std::string value(argv[++i]);
    if (arg == "--host") options.host = value;
    else if (arg == "--port") options.port = std::atoi(value.c_str());
    else if (arg == "--sender") options.sender = value;
    else if (arg == "--target") options.target = value;
    else if (arg == "--username") options.username = value;
    else if (arg == "--password") options.password = value;
    else if (arg == "--store") options.store = value;
    else if (arg == "--dictionary") options.dictionary = value;
    else if (arg == "--heartbeat") options.heartbeat = std::atoi(value.c_str());
    else if (arg == "--reset-on-logon") options.reset_on_logon = (value == "Y" || value == "y");
    else if (arg == "--timeout") options.timeout = std::atof(value.c_str());
    else {
      std::cerr << "fix_client: unknown option " << arg << "\n";
      return false;
    }
  }
  if (options.sender.empty() || options.store.empty()) {
    std::cerr << "fix_client: --sender and --store are required\n";
    return false;
  }
  // A password without a username would be an incomplete credential; by convention the
  // exchange's sessions use the SenderCompID as the username.
  if (!options.password.empty() && options.username.empty()) options.username = options.sender;
  return true;
}

// The session configuration is written in QuickFIX's own settings-file syntax, so that what the
// counterpart runs with can be read exactly as a QuickFIX user would write it.
std::string settings_text(const Options& options) {
  std::ostringstream text;
  text << "[DEFAULT]\n"
       << "ConnectionType=initiator\n"
       << "BeginString=FIX.4.4\n"
       << "SenderCompID=" << options.sender << "\n"
       << "TargetCompID=" << options.target << "\n"
       << "SocketConnectHost=" << options.host << "\n"
       << "SocketConnectPort=" << options.port << "\n"
       << "HeartBtInt=" << options.heartbeat << "\n"
       << "FileStorePath=" << options.store << "\n"
       // With a data dictionary QuickFIX also validates every received message against FIX 4.4
       // (required fields, types, enumerations, fields allowed per message, header order) and
       // answers a violation with a Reject; without one only the session-level checks run
       // (sequence numbers, CompIDs, SendingTime, PossDup rules, BodyLength and CheckSum).
       << (options.dictionary.empty() ? "UseDataDictionary=N\n"
                                      : "UseDataDictionary=Y\nDataDictionary=" +
                                            options.dictionary + "\n")
       // A start time equal to the end time is QuickFIX's way of saying the session never ends
       // during the day; this release has no NonStopSession setting.
       << "StartTime=00:00:00\n"
       << "EndTime=00:00:00\n"
       // Reconnect quickly after a logon command so scenarios do not wait the default 30 s.
       << "ReconnectInterval=1\n"
       << "ResetOnLogon=" << (options.reset_on_logon ? "Y" : "N") << "\n"
       << "\n[SESSION]\n";
  return text.str();
}

// Variables and the word "now" are replaced in values before a message is built, so a scenario
// can refer to identifiers the exchange assigned (an OrderID) and send fresh TransactTime values.
bool substitute(const std::string& value, const std::map<std::string, std::string>& vars,
                std::string& out, std::string& error) {
  if (value == "now") {
    out = FIX::UtcTimeStampConvertor::convert(FIX::UtcTimeStamp(), 3);
    return true;
  }
  if (!value.empty() && value[0] == '$') {
    std::map<std::string, std::string>::const_iterator var = vars.find(value.substr(1));
    if (var == vars.end()) {
      error = "variable " + value + " is not bound";
      return false;
    }
    out = var->second;
    return true;
  }
  out = value;
  return true;
}

bool build_message(const std::string& spec, const std::map<std::string, std::string>& vars,
                   FIX::Message& message, std::string& error) {
  Fields fields = split_fields(spec);
  bool has_type = false;
  for (size_t i = 0; i < fields.size(); ++i) {
    int tag = std::atoi(fields[i].first.c_str());
    if (tag <= 0 || fields[i].second.empty() || fields[i].second[0] != '=') {
      error = "bad field '" + fields[i].first + fields[i].second + "'";
      return false;
    }
    std::string value;
    if (!substitute(fields[i].second.substr(1), vars, value, error)) return false;
    // Header fields must be placed in the header for QuickFIX to order them correctly; the ones
    // the session layer owns (8, 9, 34, 49, 52, 56) are overwritten by it when the message goes out.
    if (FIX::Message::isHeaderField(tag)) {
      message.getHeader().setField(tag, value);
      if (tag == FIX::FIELD::MsgType) has_type = true;
    } else if (FIX::Message::isTrailerField(tag)) {
      message.getTrailer().setField(tag, value);
    } else {
      message.setField(tag, value);
    }
  }
  if (!has_type) {
    error = "no MsgType (35)";
    return false;
  }
  return true;
}

std::string trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return std::string();
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

// Runs the scenario and returns the process exit status.
class Scenario {
 public:
  Scenario(const Options& options, Recorder& recorder, FIX::SocketInitiator& initiator,
           const FIX::SessionID& session_id)
      : recorder_(recorder), initiator_(initiator), session_id_(session_id),
        started_(false), timeout_(options.timeout) {}

  int run(std::istream& input) {
    std::string line;
    while (std::getline(input, line)) {
      line = trim(line);
      if (line.empty() || line[0] == '#') continue;
      std::string command = line;
      std::string rest;
      size_t space = line.find_first_of(" \t");
      if (space != std::string::npos) {
        command = line.substr(0, space);
        rest = trim(line.substr(space + 1));
      }
      std::string error;
      if (command == "quit") break;
      if (!execute(command, rest, error)) {
        recorder_.say("fail " + line + ": " + error);
        std::cerr << "fix_client: FAILED at '" << line << "': " << error << std::endl;
        if (started_) initiator_.stop(true);
        return 1;
      }
    }
    // A clean end logs out if still logged on, as a well-behaved client would; Initiator::stop
    // does that and waits for the Logout reply.
    if (started_) initiator_.stop();
    recorder_.say("ok quit");
    return 0;
  }

 private:
  bool execute(const std::string& command, const std::string& rest, std::string& error) {
    if (command == "logon" || command == "connect") {
      int seen = recorder_.logons();
      if (!started_) {
        // The initiator starts its own thread, which connects and sends the Logon.
        initiator_.start();
        started_ = true;
      } else {
        session()->logon();
      }
      if (command == "logon" && !recorder_.wait_logged(true, seen, timeout_)) {
        error = "not logged on within the timeout";
        return false;
      }
    } else if (command == "logout") {
      int seen = recorder_.logouts();
      session()->logout(rest);
      if (!recorder_.wait_logged(false, seen, timeout_)) {
        error = "still logged on after the timeout";
        return false;
      }
    } else if (command == "wait-logout") {
      int seen = recorder_.logouts();
      if (recorder_.logged_on() && !recorder_.wait_logged(false, seen, timeout_)) {
        error = "still logged on after the timeout";
        return false;
      }
    } else if (command == "send") {
      FIX::Message message;
      if (!build_message(rest, vars_, message, error)) return false;
      // When logged out, QuickFIX stores an application message under the next sequence number
      // without sending it; the exchange then sees the gap at the next logon and asks for it.
      if (!FIX::Session::sendToTarget(message, session_id_) && recorder_.logged_on()) {
        error = "QuickFIX refused to send the message";
        return false;
      }
    } else if (command == "resend-request") {
      std::istringstream args(rest);
      int begin = 0, end = -1;
      args >> begin >> end;
      if (begin <= 0 || end < 0) {
        error = "usage: resend-request BEGIN END";
        return false;
      }
      FIX::Message message;
      message.getHeader().setField(FIX::FIELD::MsgType, "2");
      message.setField(FIX::FIELD::BeginSeqNo, FIX::IntConvertor::convert(begin));
      message.setField(FIX::FIELD::EndSeqNo, FIX::IntConvertor::convert(end));
      FIX::Session::sendToTarget(message, session_id_);
    } else if (command == "gap") {
      // Skipping outbound sequence numbers makes the next message arrive "too high", which a
      // standard acceptor must answer with a ResendRequest; QuickFIX then fills the gap itself.
      int skip = std::atoi(rest.c_str());
      if (skip <= 0) {
        error = "usage: gap N (N > 0)";
        return false;
      }
      session()->setNextSenderMsgSeqNum(session()->getExpectedSenderNum() + skip);
    } else if (command == "expect" || command == "expect-wire" || command == "expect-sent" ||
               command == "expect-event") {
      Stream stream = command == "expect" ? ACCEPTED
                      : command == "expect-wire" ? WIRE
                      : command == "expect-sent" ? SENT : EVENTS;
      Fields pattern = stream == EVENTS ? Fields(1, std::make_pair(rest, std::string()))
                                        : split_fields(rest);
      std::string matched;
      if (!recorder_.expect(stream, pattern, vars_, timeout_, matched)) {
        error = std::string("no ") + stream_name(stream) + " message/event matched within the timeout";
        return false;
      }
    } else if (command == "none" || command == "none-wire" || command == "none-sent") {
      Stream stream = command == "none" ? ACCEPTED : command == "none-wire" ? WIRE : SENT;
      std::string matched;
      if (recorder_.any(stream, split_fields(rest), vars_, matched)) {
        error = std::string("unexpected ") + stream_name(stream) + " message: " + matched;
        return false;
      }
    } else if (command == "crash") {
      // Ends the process at once, without a Logout, as a crashed client would: the kernel closes
      // the socket. The FileStore is flushed after every write, so it is left as QuickFIX last
      // wrote it and a later process on the same store continues from there.
      recorder_.say("ok crash");
      std::cout.flush();
      std::_Exit(0);
    } else if (command == "timeout") {
      timeout_ = std::atof(rest.c_str());
    } else if (command == "sleep") {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atol(rest.c_str())));
    } else if (command == "echo") {
      recorder_.say("echo " + expand(rest));
    } else {
      error = "unknown command";
      return false;
    }
    recorder_.say("ok " + command + (rest.empty() ? "" : " " + rest));
    return true;
  }

  // Replaces "$name" words in echo text so a test can read back a bound variable.
  std::string expand(const std::string& text) {
    std::istringstream words(text);
    std::string word, out;
    while (words >> word) {
      std::string value;
      std::string ignored;
      if (!substitute(word, vars_, value, ignored)) value = word;
      out += (out.empty() ? "" : " ") + value;
    }
    return out;
  }

  FIX::Session* session() {
    FIX::Session* session = FIX::Session::lookupSession(session_id_);
    if (!session) throw std::runtime_error("session not created");
    return session;
  }

  Recorder& recorder_;
  FIX::SocketInitiator& initiator_;
  FIX::SessionID session_id_;
  bool started_;
  double timeout_;
  std::map<std::string, std::string> vars_;
};

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse_options(argc, argv, options)) {
    usage();
    return 2;
  }
  try {
    std::istringstream text(settings_text(options));
    FIX::SessionSettings settings(text);
    Recorder recorder;
    ScriptedApplication application(recorder, options.username, options.password);
    FIX::FileStoreFactory store(settings);
    TranscriptLogFactory logs(recorder);
    FIX::SocketInitiator initiator(application, store, settings, logs);
    FIX::SessionID session_id("FIX.4.4", options.sender, options.target);
    Scenario scenario(options, recorder, initiator, session_id);
    return scenario.run(std::cin);
  } catch (std::exception& e) {
    std::cout << "fail " << e.what() << std::endl;
    std::cerr << "fix_client: " << e.what() << std::endl;
    return 1;
  }
}
