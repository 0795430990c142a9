import pytest

from glade import ConfigRecord, Error, ErrorCode, Message, MessageType, RecordDict


def _instruction(**kw):
    return Message(RecordDict({"config": ConfigRecord({"lr": 0.1})}), dst_node_id=5, **kw)


def test_reply_routes_back_and_keeps_group():
    msg = _instruction(message_type=MessageType.EVALUATE, group_id="3", run_id=9)
    reply = Message.reply(msg, RecordDict())
    md = reply.metadata
    assert md.reply_to_message_id == msg.metadata.message_id
    assert (md.src_node_id, md.dst_node_id) == (5, 0)
    assert (md.group_id, md.message_type, md.run_id) == ("3", "evaluate", 9)
    assert md.message_id != msg.metadata.message_id


def test_error_reply():
    msg = _instruction()
    reply = Message.error_reply(msg, Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason="x"))
    assert reply.has_error and not reply.has_content
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION


def test_exactly_one_of_content_or_error():
    with pytest.raises(ValueError, match="exactly one"):
        Message()
    with pytest.raises(ValueError, match="exactly one"):
        Message(RecordDict(), error=Error(code=1))


def test_content_must_be_record_dict():
    with pytest.raises(TypeError, match="RecordDict"):
        Message({"a": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["Train", "", "has space", "9lives", "a..b"])
def test_invalid_message_types_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid message type"):
        _instruction(message_type=bad)


@pytest.mark.parametrize("good", ["train", "evaluate", "query", "fit-head", "train.prox"])
def test_custom_message_types(good):
    assert _instruction(message_type=good).message_type == good


def test_ttl_must_be_positive():
    with pytest.raises(ValueError, match="ttl"):
        _instruction(ttl=0)


def test_with_metadata_shares_content():
    msg = _instruction()
    moved = msg.with_metadata(dst_node_id=7)
    assert moved.metadata.dst_node_id == 7
    assert moved.content is msg.content
