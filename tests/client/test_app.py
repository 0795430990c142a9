import pytest

from glade import ClientApp, Context, ErrorCode, Message, MetricRecord, RecordDict


def _msg(message_type="train"):
    return Message(RecordDict(), dst_node_id=1, message_type=message_type)


def _ctx():
    return Context(run_id=1, node_id=1)


def test_dispatch_by_message_type_including_custom():
    app = ClientApp()
    seen = []

    @app.train()
    def train(msg, ctx):
        seen.append("train")
        return Message.reply(msg, RecordDict({"m": MetricRecord({"x": 1})}))

    @app.evaluate()
    def evaluate(msg, ctx):
        seen.append("evaluate")
        return RecordDict()  # a bare RecordDict becomes the reply content

    @app.on("fit-head")
    def custom(msg, ctx):
        seen.append("custom")
        return RecordDict()

    @app.train("prox")
    def prox(msg, ctx):
        seen.append("prox")
        return RecordDict()

    for t in ["train", "evaluate", "fit-head", "train.prox"]:
        msg = _msg(t)
        reply = app(msg, _ctx())
        assert reply.has_content
        assert reply.metadata.reply_to_message_id == msg.metadata.message_id
    assert seen == ["train", "evaluate", "custom", "prox"]
    assert app.message_types == {"train", "evaluate", "fit-head", "train.prox"}


def test_unknown_type_is_an_error_reply():
    app = ClientApp()
    reply = app(_msg("query"), _ctx())
    assert reply.error.code == ErrorCode.UNKNOWN_MESSAGE_TYPE
    assert "query" in reply.error.reason


def test_exception_becomes_error_reply_with_traceback():
    app = ClientApp()

    @app.train()
    def train(msg, ctx):
        raise RuntimeError("out of data")

    reply = app(_msg(), _ctx())
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "RuntimeError: out of data" in reply.error.reason
    assert "Traceback" in reply.error.reason
    assert "def train" in reply.error.reason or "in train" in reply.error.reason


def test_wrong_return_type_is_an_error_reply():
    app = ClientApp()

    @app.train()
    def train(msg, ctx):
        return {"not": "a message"}

    reply = app(_msg(), _ctx())
    assert reply.error.code == ErrorCode.INVALID_REPLY
    assert "dict" in reply.error.reason


def test_mods_wrap_handlers_in_order():
    calls = []

    def outer(msg, ctx, call_next):
        calls.append("outer-in")
        reply = call_next(msg, ctx)
        calls.append("outer-out")
        return reply

    def inner(msg, ctx, call_next):
        calls.append("inner-in")
        reply = call_next(msg, ctx)
        reply.content["metrics"] = MetricRecord({"clipped": 1})
        return reply

    app = ClientApp(mods=[outer, inner])

    @app.train()
    def train(msg, ctx):
        calls.append("handler")
        return RecordDict()

    reply = app(_msg(), _ctx())
    assert calls == ["outer-in", "inner-in", "handler", "outer-out"]
    assert reply.content["metrics"]["clipped"] == 1


def test_mod_exception_is_an_error_reply():
    def broken(msg, ctx, call_next):
        raise ValueError("bad mod")

    app = ClientApp(mods=[broken])
    app.train()(lambda msg, ctx: RecordDict())
    reply = app(_msg(), _ctx())
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "broken" in reply.error.reason and "bad mod" in reply.error.reason


def test_duplicate_handler_and_bad_type_name():
    app = ClientApp()
    app.train()(lambda m, c: RecordDict())
    with pytest.raises(ValueError, match="already exists"):
        app.train()(lambda m, c: RecordDict())
    with pytest.raises(ValueError, match="invalid message type"):
        app.on("Bad Name")


def test_context_state_is_the_handlers_to_keep():
    app = ClientApp()

    @app.train()
    def train(msg, ctx):
        count = ctx.state.get("count", MetricRecord({"n": 0}))
        count["n"] = count["n"] + 1
        ctx.state["count"] = count
        return RecordDict()

    ctx = _ctx()
    for _ in range(3):
        app(_msg(), ctx)
    assert ctx.state["count"]["n"] == 3
