# Rebuild .proto source from the serialized FileDescriptorProtos embedded in the tensorboard
# wheel's *_pb2.py modules (the wheel ships no .proto files). Comments are not in descriptors.
import sys, os, importlib
from google.protobuf import descriptor_pb2 as D
F = D.FieldDescriptorProto
TYPES = {F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64",
         F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64", F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool",
         F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
         F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64"}

def tname(f):
    return TYPES.get(f.type) or f.type_name  # fully qualified ".tensorboard.X" is valid proto syntax

def fopts(f, syntax):
    o = []
    if f.options.HasField("packed"): o.append("packed = %s" % str(f.options.packed).lower())
    if f.options.HasField("deprecated"): o.append("deprecated = %s" % str(f.options.deprecated).lower())
    if f.HasField("default_value"): o.append("default = %s" % f.default_value)
    if f.HasField("json_name") and False: pass
    return " [%s]" % ", ".join(o) if o else ""

def enum(e, ind, out):
    out.append("%senum %s {" % (ind, e.name))
    if e.options.deprecated: out.append("%s  option deprecated = true;" % ind)
    if e.options.HasField("allow_alias"): out.append("%s  option allow_alias = true;" % ind)
    for v in e.value:
        dep = " [deprecated = true]" if v.options.deprecated else ""
        out.append("%s  %s = %d%s;" % (ind, v.name, v.number, dep))
    for r in e.reserved_range: out.append("%s  reserved %d to %d;" % (ind, r.start, r.end))
    out.append("%s}" % ind)

def field(f, msg, ind, out, syntax):
    maps = {n.name: n for n in msg.nested_type if n.options.map_entry}
    short = f.type_name.rsplit(".", 1)[-1]
    if f.label == F.LABEL_REPEATED and f.type == F.TYPE_MESSAGE and short in maps:
        k, v = maps[short].field
        out.append("%smap<%s, %s> %s = %d;" % (ind, tname(k), tname(v), f.name, f.number)); return
    lab = ""
    if f.label == F.LABEL_REPEATED: lab = "repeated "
    elif syntax == "proto2": lab = "required " if f.label == F.LABEL_REQUIRED else "optional "
    elif f.proto3_optional: lab = "optional "
    out.append("%s%s%s %s = %d%s;" % (ind, lab, tname(f), f.name, f.number, fopts(f, syntax)))

def message(m, ind, out, syntax):
    out.append("%smessage %s {" % (ind, m.name))
    if m.options.deprecated: out.append("%s  option deprecated = true;" % ind)
    for e in m.enum_type: enum(e, ind + "  ", out)
    for n in m.nested_type:
        if not n.options.map_entry: message(n, ind + "  ", out, syntax)
    real_oneofs = {}
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional: real_oneofs.setdefault(f.oneof_index, [])
    done = set()
    for f in m.field:
        if f.HasField("oneof_index") and f.oneof_index in real_oneofs:
            i = f.oneof_index
            if i in done: continue
            done.add(i)
            out.append("%s  oneof %s {" % (ind, m.oneof_decl[i].name))
            for g in m.field:
                if g.HasField("oneof_index") and g.oneof_index == i: field(g, m, ind + "    ", out, syntax)
            out.append("%s  }" % ind)
        else:
            field(f, m, ind + "  ", out, syntax)
    for r in m.reserved_range: out.append("%s  reserved %d to %d;" % (ind, r.start, r.end - 1))
    for n in m.reserved_name: out.append('%s  reserved "%s";' % (ind, n))
    out.append("%s}" % ind)

def fileopts(o):
    res = []
    for fd, val in o.ListFields():
        v = ('"%s"' % val) if isinstance(val, str) else str(val).lower() if isinstance(val, bool) else \
            fd.enum_type.values_by_number[val].name if fd.enum_type else str(val)
        res.append("option %s = %s;" % (fd.name, v))
    return res

def convert(mod, outdir, src):
    fdp = D.FileDescriptorProto()
    mod.DESCRIPTOR.CopyToProto(fdp)
    syntax = fdp.syntax or "proto2"
    out = ["// Rebuilt from the FileDescriptorProto in %s (tensorboard wheel); see README.md." % src,
           'syntax = "%s";' % syntax, "", "package %s;" % fdp.package, ""]
    for i, d in enumerate(fdp.dependency):
        out.append('import %s"%s";' % ("public " if i in fdp.public_dependency else "", d))
    if fdp.dependency: out.append("")
    out += fileopts(fdp.options); out.append("")
    for e in fdp.enum_type: enum(e, "", out); out.append("")
    for m in fdp.message_type: message(m, "", out, syntax); out.append("")
    path = os.path.join(outdir, fdp.name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").write("\n".join(out))
    return fdp

if __name__ == "__main__":
    outdir = sys.argv[1]
    for n in ["event", "summary", "histogram", "tensor", "resource_handle", "tensor_shape", "types"]:
        mod = importlib.import_module("tensorboard.compat.proto.%s_pb2" % n)
        convert(mod, outdir, "tensorboard/compat/proto/%s_pb2.py" % n)
