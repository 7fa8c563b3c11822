// A minimal FIX 4.4 acceptor built on QuickFIX, used only to check fix_client.cpp (see
// selftest.sh). It stands in for the exchange so that the client's scenario language, its store
// handling and its transcript can be verified against a known-good session layer before the
// exchange's own acceptor is tested with it.
//
// It answers a NewOrderSingle with a "new" ExecutionReport and an OrderCancelRequest with a
// "canceled" one, echoing the identifying fields, and refuses a Logon whose Password (554) does
// not match the configured one. Everything else (heartbeats, resend requests, gap fills, logout)
// is QuickFIX's standard behaviour.
//
// usage: echo_acceptor --port P --store DIR [--password PW] [--dictionary FIX44.xml] CLIENT...

#include <quickfix/Application.h>
#include <quickfix/FieldConvertors.h>
#include <quickfix/FileLog.h>
#include <quickfix/FileStore.h>
#include <quickfix/Message.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketAcceptor.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

class EchoApplication : public FIX::Application {
 public:
  explicit EchoApplication(const std::string& password) : password_(password), next_id_(1) {}

  void onCreate(const FIX::SessionID&) {}
  void onLogon(const FIX::SessionID&) {}
  void onLogout(const FIX::SessionID&) {}
  void toAdmin(FIX::Message&, const FIX::SessionID&) {}
  void toApp(FIX::Message&, const FIX::SessionID&) throw(FIX::DoNotSend) {}

  void fromAdmin(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::RejectLogon) {
    // Throwing RejectLogon is QuickFIX's standard way for an acceptor to refuse a Logon: the
    // library answers with a Logout carrying the text and disconnects.
    if (password_.empty() || message.getHeader().getField(FIX::FIELD::MsgType) != "A") return;
    if (!message.isSetField(FIX::FIELD::Password) ||
        message.getField(FIX::FIELD::Password) != password_) {
      throw FIX::RejectLogon("invalid username or password");
    }
  }

  void fromApp(const FIX::Message& message, const FIX::SessionID& session)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::UnsupportedMessageType) {
    const std::string type = message.getHeader().getField(FIX::FIELD::MsgType);
    if (type == "D") {
      report(message, session, "0", "0", message.getField(FIX::FIELD::OrderQty));
    } else if (type == "F") {
      report(message, session, "4", "4", "0");
    } else {
      // QuickFIX turns this exception into a BusinessMessageReject (380=3).
      throw FIX::UnsupportedMessageType();
    }
  }

 private:
  // Sends an ExecutionReport that echoes the order's identifying fields. The numbers are not
  // meant to model an exchange; they only make every report distinguishable in a transcript.
  void report(const FIX::Message& request, const FIX::SessionID& session, const char* exec_type,
              const char* status, const std::string& leaves) {
    FIX::Message report;
    report.getHeader().setField(FIX::FIELD::MsgType, "8");
    const int id = next_id_++;
    report.setField(FIX::FIELD::OrderID, "O" + FIX::IntConvertor::convert(id));
    report.setField(FIX::FIELD::ExecID, "E" + FIX::IntConvertor::convert(id));
    report.setField(FIX::FIELD::ExecType, exec_type);
    report.setField(FIX::FIELD::OrdStatus, status);
    const int echoed[] = {FIX::FIELD::ClOrdID, FIX::FIELD::OrigClOrdID, FIX::FIELD::Symbol,
                          FIX::FIELD::Side, FIX::FIELD::OrderQty};
    for (size_t i = 0; i < sizeof(echoed) / sizeof(echoed[0]); ++i) {
      if (request.isSetField(echoed[i])) report.setField(echoed[i], request.getField(echoed[i]));
    }
    report.setField(FIX::FIELD::LeavesQty, leaves);
    report.setField(FIX::FIELD::CumQty, "0");
    report.setField(FIX::FIELD::AvgPx, "0");
    report.setField(FIX::FIELD::TransactTime,
                    FIX::UtcTimeStampConvertor::convert(FIX::UtcTimeStamp(), 3));
    FIX::Session::sendToTarget(report, session);
  }

  std::string password_;
  int next_id_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string port, store, password, dictionary;
  std::vector<std::string> clients;
  for (int i = 1; i < argc; ++i) {
    std::string arg(argv[i]);
    if ((arg == "--port" || arg == "--store" || arg == "--password" || arg == "--dictionary") &&
        i + 1 < argc) {
      std::string value(argv[++i]);
      if (arg == "--port") port = value;
      else if (arg == "--store") store = value;
      else if (arg == "--dictionary") dictionary = value;
      else password = value;
    } else {
      clients.push_back(arg);
    }
  }
  if (port.empty() || store.empty() || clients.empty()) {
    std::cerr << "usage: echo_acceptor --port P --store DIR [--password PW] "
                 "[--dictionary FIX44.xml] CLIENT_COMP_ID...\n";
    return 2;
  }

  std::ostringstream text;
  text << "[DEFAULT]\n"
       << "ConnectionType=acceptor\n"
       << "BeginString=FIX.4.4\n"
       << "SenderCompID=EXCHANGE\n"
       << "SocketAcceptPort=" << port << "\n"
       << "SocketReuseAddress=Y\n"
       << "FileStorePath=" << store << "\n"
       << "FileLogPath=" << store << "\n"
       // With the dictionary the acceptor validates what the client sends, which checks that the
       // scenarios in selftest.sh produce well-formed FIX 4.4.
       << (dictionary.empty() ? "UseDataDictionary=N\n"
                              : "UseDataDictionary=Y\nDataDictionary=" + dictionary + "\n")
       << "StartTime=00:00:00\n"
       << "EndTime=00:00:00\n";
  for (size_t i = 0; i < clients.size(); ++i) {
    text << "\n[SESSION]\nTargetCompID=" << clients[i] << "\n";
  }

  try {
    std::istringstream stream(text.str());
    FIX::SessionSettings settings(stream);
    EchoApplication application(password);
    FIX::FileStoreFactory stores(settings);
    FIX::FileLogFactory logs(settings);
    FIX::SocketAcceptor acceptor(application, stores, settings, logs);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    acceptor.start();
    // The self-test waits for this line before it starts a client.
    std::cout << "listening " << port << std::endl;
    while (!stop_requested) usleep(50 * 1000);
    acceptor.stop();
    return 0;
  } catch (std::exception& e) {
    std::cerr << "echo_acceptor: " << e.what() << std::endl;
    return 1;
  }
}
