%% @private
%% @doc A small, strict JSON (RFC 8259) decoder for headcount's stats.
%%
%% OTP gained a `json' module only in OTP 27 and this binding supports
%% OTP 24 and later, so it carries this decoder instead of a dependency.
%% Objects become maps with binary keys (never atoms: no atom-table growth
%% from data), arrays lists, strings UTF-8 binaries, numbers integers or
%% floats, and `true' / `false' / `null' those atoms. Invalid input raises
%% `{invalid_json, Offset}'.
-module(headcount_json).

-export([decode/1]).

-spec decode(binary()) -> term().
decode(Bin) when is_binary(Bin) ->
    {Value, Rest} = value(ws(Bin), Bin),
    case ws(Rest) of
        <<>> -> Value;
        Trailing -> fail(Trailing, Bin)
    end.

fail(Rest, Bin) ->
    erlang:error({invalid_json, byte_size(Bin) - byte_size(Rest)}).

ws(<<C, Rest/binary>>) when C =:= $\s; C =:= $\t; C =:= $\n; C =:= $\r -> ws(Rest);
ws(Rest) -> Rest.

value(<<${, Rest/binary>>, B) -> object(ws(Rest), #{}, B);
value(<<$[, Rest/binary>>, B) -> array(ws(Rest), [], B);
value(<<$", Rest/binary>>, B) -> string(Rest, [], B);
value(<<"true", Rest/binary>>, _) -> {true, Rest};
value(<<"false", Rest/binary>>, _) -> {false, Rest};
value(<<"null", Rest/binary>>, _) -> {null, Rest};
value(<<C, _/binary>> = Rest, B) when C =:= $-; C >= $0, C =< $9 -> number(Rest, B);
value(Rest, B) -> fail(Rest, B).

object(<<$}, Rest/binary>>, Acc, _) when map_size(Acc) =:= 0 -> {Acc, Rest};
object(<<$", Rest0/binary>>, Acc, B) ->
    {Key, Rest1} = string(Rest0, [], B),
    case ws(Rest1) of
        <<$:, Rest2/binary>> ->
            {Value, Rest3} = value(ws(Rest2), B),
            Acc1 = Acc#{Key => Value},
            case ws(Rest3) of
                <<$,, Rest4/binary>> -> object_key(ws(Rest4), Acc1, B);
                <<$}, Rest4/binary>> -> {Acc1, Rest4};
                Other -> fail(Other, B)
            end;
        Other ->
            fail(Other, B)
    end;
object(Rest, _, B) -> fail(Rest, B).

object_key(<<$", _/binary>> = Rest, Acc, B) -> object(Rest, Acc, B);
object_key(Rest, _, B) -> fail(Rest, B).

array(<<$], Rest/binary>>, [], _) -> {[], Rest};
array(Rest0, Acc, B) ->
    {Value, Rest1} = value(Rest0, B),
    case ws(Rest1) of
        <<$,, Rest2/binary>> -> array(ws(Rest2), [Value | Acc], B);
        <<$], Rest2/binary>> -> {lists:reverse([Value | Acc]), Rest2};
        Other -> fail(Other, B)
    end.

string(<<$", Rest/binary>>, Acc, _) ->
    {iolist_to_binary(lists:reverse(Acc)), Rest};
string(<<$\\, E, Rest/binary>>, Acc, B) ->
    case E of
        $" -> string(Rest, [$" | Acc], B);
        $\\ -> string(Rest, [$\\ | Acc], B);
        $/ -> string(Rest, [$/ | Acc], B);
        $b -> string(Rest, [$\b | Acc], B);
        $f -> string(Rest, [$\f | Acc], B);
        $n -> string(Rest, [$\n | Acc], B);
        $r -> string(Rest, [$\r | Acc], B);
        $t -> string(Rest, [$\t | Acc], B);
        $u -> unicode_escape(Rest, Acc, B);
        _ -> fail(Rest, B)
    end;
string(<<C, _/binary>> = Rest, _, B) when C < 16#20 -> fail(Rest, B);
string(<<C/utf8, Rest/binary>>, Acc, B) -> string(Rest, [<<C/utf8>> | Acc], B);
string(Rest, _, B) -> fail(Rest, B).

unicode_escape(<<H:4/binary, Rest/binary>> = Here, Acc, B) ->
    case hex(H) of
        Hi when Hi >= 16#D800, Hi =< 16#DBFF ->
            case Rest of
                <<"\\u", L:4/binary, Rest2/binary>> ->
                    case hex(L) of
                        Lo when Lo >= 16#DC00, Lo =< 16#DFFF ->
                            C = 16#10000 + ((Hi - 16#D800) bsl 10) + (Lo - 16#DC00),
                            string(Rest2, [<<C/utf8>> | Acc], B);
                        _ -> fail(Here, B)
                    end;
                _ -> fail(Here, B)
            end;
        C when C >= 16#DC00, C =< 16#DFFF -> fail(Here, B);
        C when is_integer(C) -> string(Rest, [<<C/utf8>> | Acc], B);
        error -> fail(Here, B)
    end;
unicode_escape(Rest, _, B) -> fail(Rest, B).

hex(H) ->
    case lists:all(fun is_hex/1, binary_to_list(H)) of
        true -> binary_to_integer(H, 16);
        false -> error
    end.

is_hex(C) -> (C >= $0 andalso C =< $9) orelse (C >= $a andalso C =< $f) orelse (C >= $A andalso C =< $F).

%% -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
number(Bin, B) ->
    {Sign, R0} = case Bin of <<$-, RN/binary>> -> {<<"-">>, RN}; _ -> {<<>>, Bin} end,
    {Int, R1} = case R0 of
                    <<$0, RZ/binary>> -> {<<"0">>, RZ};
                    <<C, _/binary>> when C >= $1, C =< $9 -> digits(R0);
                    _ -> fail(R0, B)
                end,
    {Frac, R2} = case R1 of
                     <<$., RF0/binary>> ->
                         case digits(RF0) of
                             {<<>>, _} -> fail(RF0, B);
                             {F, RF} -> {F, RF}
                         end;
                     _ -> {none, R1}
                 end,
    {Exp, R3} = case R2 of
                    <<E, RE/binary>> when E =:= $e; E =:= $E ->
                        {ESign, RS} = case RE of
                                          <<$-, X/binary>> -> {<<"-">>, X};
                                          <<$+, X/binary>> -> {<<>>, X};
                                          _ -> {<<>>, RE}
                                      end,
                        case digits(RS) of
                            {<<>>, _} -> fail(RS, B);
                            {D, RD} -> {<<ESign/binary, D/binary>>, RD}
                        end;
                    _ -> {none, R2}
                end,
    Value = case {Frac, Exp} of
                {none, none} ->
                    binary_to_integer(<<Sign/binary, Int/binary>>);
                _ ->
                    F1 = case Frac of none -> <<"0">>; _ -> Frac end,
                    E1 = case Exp of none -> <<"0">>; _ -> Exp end,
                    float_of(<<Sign/binary, Int/binary, $., F1/binary, $e, E1/binary>>, Bin, B)
            end,
    {Value, R3}.

float_of(Text, Here, B) ->
    try binary_to_float(Text)
    catch error:badarg -> fail(Here, B)  % out of range for a double
    end.

digits(Bin) -> digits(Bin, 0).

digits(Bin, N) ->
    case Bin of
        <<_:N/binary, C, _/binary>> when C >= $0, C =< $9 -> digits(Bin, N + 1);
        <<D:N/binary, Rest/binary>> -> {D, Rest}
    end.
