"""Teacher backends behind one interface (``Teacher.complete``)."""

from qasynth.teachers.base import Teacher, TeacherReply, TeacherRequest, request_key
from qasynth.teachers.factory import BACKENDS, make_teacher
from qasynth.teachers.openai import OpenAITeacher
from qasynth.teachers.rules import RulesTeacher
from qasynth.teachers.transformers import TransformersTeacher
from qasynth.teachers.vllm import VLLMTeacher

__all__ = [
    "BACKENDS",
    "OpenAITeacher",
    "RulesTeacher",
    "Teacher",
    "TeacherReply",
    "TeacherRequest",
    "TransformersTeacher",
    "VLLMTeacher",
    "make_teacher",
    "request_key",
]
