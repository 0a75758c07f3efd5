from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.generics import RetrieveUpdateAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from invoicegen.accounts import services
from invoicegen.accounts.api import serializers
from invoicegen.accounts.throttles import LOGIN_THROTTLES
from invoicegen.core.api import AuthThrottle


def _valid_data(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class AnonymousAuthView(APIView):
    """Endpoints reached before logging in: open to anyone, throttled per client IP."""

    permission_classes = [AllowAny]
    throttle_classes = [AuthThrottle]


class SignupView(AnonymousAuthView):
    @extend_schema(
        operation_id="signup",
        request=serializers.SignupSerializer,
        responses={201: serializers.SignupResponseSerializer},
    )
    def post(self, request):
        user = services.sign_up(**_valid_data(serializers.SignupSerializer, request))
        return Response(
            serializers.SignupResponseSerializer(user).data, status=status.HTTP_201_CREATED
        )


class LoginView(AnonymousAuthView):
    """Throttled per client IP and per attempted account; a locked-out account answers 429
    with Retry-After (services.log_in)."""

    throttle_classes = LOGIN_THROTTLES

    @extend_schema(
        operation_id="login",
        request=serializers.LoginSerializer,
        responses={200: serializers.LoginResponseSerializer},
    )
    def post(self, request):
        data = _valid_data(serializers.LoginSerializer, request)
        user, token = services.log_in(request=request, **data)
        return Response(serializers.LoginResponseSerializer({"token": token, "user": user}).data)


class LogoutView(APIView):
    @extend_schema(operation_id="logout", request=None, responses={204: None})
    def post(self, request):
        services.log_out(request._request, token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    get=extend_schema(operation_id="getCurrentUser"),
    patch=extend_schema(operation_id="updateCurrentUser"),
)
class MeView(RetrieveUpdateAPIView):
    serializer_class = serializers.UserSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        return self.request.user

    def perform_update(self, serializer):
        services.update_profile(
            self.request.user, actor=self.request.user, **serializer.validated_data
        )


class PasswordChangeView(APIView):
    @extend_schema(
        operation_id="changePassword",
        request=serializers.PasswordChangeSerializer,
        responses={204: None},
    )
    def post(self, request):
        data = _valid_data(serializers.PasswordChangeSerializer, request)
        services.change_password(
            request.user, keep_token=request.auth, request=request._request, **data
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordResetView(AnonymousAuthView):
    @extend_schema(
        operation_id="requestPasswordReset",
        request=serializers.PasswordResetSerializer,
        responses={202: None},
    )
    def post(self, request):
        services.request_password_reset(**_valid_data(serializers.PasswordResetSerializer, request))
        return Response(status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(AnonymousAuthView):
    @extend_schema(
        operation_id="confirmPasswordReset",
        request=serializers.PasswordResetConfirmSerializer,
        responses={204: None},
    )
    def post(self, request):
        services.reset_password(**_valid_data(serializers.PasswordResetConfirmSerializer, request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VerifyEmailView(AnonymousAuthView):
    @extend_schema(
        operation_id="verifyEmail", request=serializers.EmailLinkSerializer, responses={204: None}
    )
    def post(self, request):
        services.verify_email(**_valid_data(serializers.EmailLinkSerializer, request))
        return Response(status=status.HTTP_204_NO_CONTENT)
