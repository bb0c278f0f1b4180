// One-thread uWebSockets pub/sub server for benches/peers/run.sh: the peer that pushwire's
// hub is measured against on WebSocket fan-out.
//
//   uws_pubsub PORT        (listens on 127.0.0.1:PORT)
//
// GET  /topics/fanout/ws   WebSocket; subscribed to topic "fanout" when it opens
// POST /topics/fanout      the body is published to "fanout" as one text message, answered 201
//
// No compression, no idle timeout or automatic pings (pushwire's hub sends none either), a
// backpressure limit far above what one run queues, so nothing is dropped or closed.
#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace {
struct Subscriber {};
}

int main(int argc, char **argv) {
    int port = argc > 1 ? std::atoi(argv[1]) : 19412;
    uWS::App app;

    uWS::App::WebSocketBehavior<Subscriber> behavior = {};
    behavior.compression = uWS::DISABLED;
    behavior.maxPayloadLength = 64 * 1024;
    behavior.idleTimeout = 0;
    behavior.maxBackpressure = 256 * 1024 * 1024;
    behavior.closeOnBackpressureLimit = false;
    behavior.sendPingsAutomatically = false;
    behavior.open = [](auto *ws) { ws->subscribe("fanout"); };
    behavior.message = [](auto *, std::string_view, uWS::OpCode) {};
    app.ws<Subscriber>("/topics/fanout/ws", std::move(behavior));

    app.post("/topics/fanout", [&app](auto *res, auto *) {
        auto body = std::make_shared<std::string>();
        res->onAborted([]() {});
        res->onData([&app, res, body](std::string_view chunk, bool last) {
            body->append(chunk.data(), chunk.size());
            if (last) {
                app.publish("fanout", *body, uWS::OpCode::TEXT, false);
                res->writeStatus("201 Created")->end();
            }
        });
    });

    app.listen("127.0.0.1", port, [port](auto *listen_socket) {
        if (!listen_socket) {
            std::fprintf(stderr, "uws_pubsub: cannot listen on 127.0.0.1:%d\n", port);
            std::exit(1);
        }
        std::printf("uws_pubsub listening on 127.0.0.1:%d\n", port);
        std::fflush(stdout);
    });
    app.run();
    return 0;
}
